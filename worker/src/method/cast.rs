//! FP32, FP16 and BF16: the model cast to the precision's type and moved to
//! the device. On the CPU FP32 is the model as loaded: it is the reference
//! everything else is compared with.
//!
//! The cast follows PyTorch's `nn.Module.to`: floating-point parameters and
//! buffers change type, integer and bool ones (token positions, attention
//! bias indices, masks) stay as they are (`shim::cast_floating`); libtorch's
//! C++ `Module::to(dtype)`, which tch's `CModule::to` calls, would convert
//! them all and break every model that indexes with one.

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::Context;
use crate::model;
use crate::shim::{self, FloatType};
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use std::borrow::Cow;

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
        // Read before the cast copy is loaded, so that the graph read here
        // and the copy are never in memory at once.
        let rnn_notes = if reference {
            Vec::new()
        } else {
            constant_rnn_state_notes(&ctx.model.bytes, precision)
        };
        let module = if reference {
            ModuleRef::Borrowed(ctx.model.module.as_ref())
        } else {
            // A fresh copy, cast (and moved) inside this precision's memory
            // window.
            let to = FloatType::of(kind).expect("cast kinds are floating point");
            let bytes = match to {
                FloatType::Float32 => Cow::Borrowed(ctx.model.bytes.as_slice()),
                _ => Cow::Owned(shim::cast_floating(&ctx.model.bytes, to).map_err(|e| {
                    ctx.failed(
                        precision,
                        Method::Cast,
                        format!(
                            "cannot cast the model to {precision}: {}",
                            model::clean_torch_error(e)
                        ),
                    )
                })?),
            };
            let m = model::load_on(&ctx.model.path, &bytes, ctx.tch_device())
                .map_err(|e| ctx.failed(precision, Method::Cast, e.to_string()))?;
            ModuleRef::Owned(Box::new(m))
        };
        let mut result = ctx.result(precision, Status::Ok, Method::Cast, String::new());
        result.notes.extend(rnn_notes);
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

/// libtorch's name of the dtype a cast to `precision` gives.
fn libtorch_dtype(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp16 => "Half",
        Precision::Bf16 => "BFloat16",
        _ => "Float",
    }
}

/// Why a cast RNN fails, said before it does: a traced nn.LSTM/GRU/RNN
/// without an initial state has its zero state made with the dtype it was
/// traced in, a constant the cast cannot reach. oneDNN's error for it
/// ("could not create a primitive descriptor for the LSTM forward
/// propagation primitive") does not say so.
fn constant_rnn_state_notes(bytes: &[u8], precision: Precision) -> Vec<String> {
    let target = libtorch_dtype(precision);
    // A model the shim cannot read gives no note; loading it reports why.
    let states = crate::shim::rnn_constant_state_dtypes(bytes).unwrap_or_default();
    let mut notes: Vec<String> = states
        .into_iter()
        .filter(|s| s.dtype != target)
        .map(|s| {
            format!(
                "the graph makes {}'s initial state with {}(dtype={}), a constant \
                 (tracing records nn.LSTM/GRU's default zero state in the dtype it was \
                 traced in): cast to {precision}, its input and weights are {target} \
                 and the state stays {}, which libtorch's RNN refuses",
                s.rnn, s.factory, s.dtype, s.dtype
            )
        })
        .collect();
    // LSTM's h0 and c0 are made alike: one note for both.
    notes.dedup();
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Forward;
    use std::path::{Path, PathBuf};
    use tch::{Kind, Tensor};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name)
    }

    /// int_buffer.pt indexes an embedding with an int64 positions buffer and
    /// gathers a float bias table with an int64 index buffer.
    #[test]
    fn the_cast_keeps_integer_buffers_that_index() {
        let _no_grad = tch::no_grad_guard();
        let path = fixture("int_buffer.pt");
        let bytes = std::fs::read(&path).unwrap();
        let x = Tensor::randn([1, 16, 32], (Kind::Float, tch::Device::Cpu));
        let fp32 = model::load(&path, &bytes)
            .unwrap()
            .run(&[x.shallow_clone()])
            .unwrap();
        for (to, kind) in [
            (FloatType::Float16, Kind::Half),
            (FloatType::Bfloat16, Kind::BFloat16),
        ] {
            // libtorch's Module::to(dtype) casts the index buffers too.
            let mut every = model::load(&path, &bytes).unwrap();
            every.to(tch::Device::Cpu, kind, false);
            assert!(every.run(&[x.to_kind(kind)]).is_err(), "{to:?}");

            let cast = model::load(&path, &shim::cast_floating(&bytes, to).unwrap()).unwrap();
            for (name, p) in cast.named_parameters().unwrap() {
                assert_eq!(p.kind(), kind, "{name}");
            }
            let out = cast.run(&[x.to_kind(kind)]).unwrap();
            assert_eq!(out[0].kind(), kind);
            let err = (&out[0].to_kind(Kind::Float) - &fp32[0])
                .abs()
                .max()
                .double_value(&[]);
            assert!(err < 0.05, "{to:?}: max error {err}");
        }
    }

    #[test]
    fn bytes_that_are_no_model_are_an_error() {
        let e = shim::cast_floating(b"not a model", FloatType::Bfloat16).unwrap_err();
        assert!(matches!(e, shim::ShimError::Libtorch(_)), "{e:?}");
    }
}
