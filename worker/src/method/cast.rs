//! FP32, FP16 and BF16: the model cast to the precision's type and moved to
//! the device. On the CPU FP32 is the model as loaded: it is the reference
//! everything else is compared with.

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::Context;
use crate::model;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};

pub struct Cast;

impl PrecisionMethod for Cast {
    fn method(&self) -> Method {
        Method::Cast
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let kind = model::cast_kind(precision).expect("cast precisions have a kind");
        let reference = precision == Precision::Fp32 && ctx.device == Device::Cpu;
        let module = if reference {
            ModuleRef::Borrowed(ctx.model.module.as_ref())
        } else {
            // A fresh copy, cast (and moved) inside this precision's memory
            // window. tch's `to` panics on a libtorch error; the caller
            // turns a panic into a failed result.
            let mut m = model::load(&ctx.model.path, &ctx.model.bytes)
                .map_err(|e| ctx.failed(precision, Method::Cast, e.to_string()))?;
            m.to(ctx.tch_device(), kind, false);
            ModuleRef::Owned(Box::new(m))
        };
        let mut result = ctx.result(precision, Status::Ok, Method::Cast, String::new());
        if precision == Precision::Fp32 && !reference {
            result.notes.push(
                "accuracy against FP32 on the CPU: libtorch lets cuDNN use TF32 for \
                 convolutions on compute capability 8.0 and newer, which shows here"
                    .into(),
            );
        }
        Ok(Prepared::Module(Runnable {
            module,
            inputs: model::cast_inputs(ctx.inputs, kind),
            comparison: if reference {
                Comparison::None
            } else {
                Comparison::Reference
            },
            result,
        }))
    }
}
