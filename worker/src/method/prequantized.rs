//! A model that is already quantized (it calls `quantized::` operators):
//! timed as it is, on the CPU, with libtorch's quantized engine. There is
//! no FP32 version of it to compare with.

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::Context;
use crate::qengine::{self, NoEngine};
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use tch::Tensor;

pub struct Prequantized;

impl PrecisionMethod for Prequantized {
    fn method(&self) -> Method {
        Method::Prequantized
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let engine = qengine::select().map_err(|e| match e {
            NoEngine::Missing(why) => ctx.unsupported(precision, Method::Prequantized, why),
            NoEngine::Failed(why) => ctx.failed(precision, Method::Prequantized, why),
        })?;
        let mut result = ctx.result(precision, Status::Ok, Method::Prequantized, String::new());
        result.engine = Some(engine);
        result.notes.push(
            "the model is already quantized (it calls quantized:: operators): timed as it is; there \
             is no FP32 version to compare accuracy or speed with"
                .into(),
        );
        Ok(Prepared::Module(Runnable {
            module: ModuleRef::Borrowed(ctx.model.module.as_ref()),
            inputs: ctx.inputs.iter().map(Tensor::shallow_clone).collect(),
            comparison: Comparison::None,
            result,
        }))
    }
}
