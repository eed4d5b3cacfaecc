//! FP16 and BF16 as most people run them: the FP32 model under libtorch's
//! autocast (the CPU's on the CPU, CUDA's on a CUDA device), beside the
//! full cast. Autocast runs the operators on its lower-precision list
//! (convolutions, matmuls, linear layers) in the precision's type and the
//! rest in FP32, casting their inputs as it goes, so a model whose graph
//! makes FP32 tensors of its own (a traced zero hidden state) runs where the
//! cast model mixes types and fails. Inputs stay FP32.
//!
//! Every forward() call, timed, compared or profiled, is one autocast
//! region on the calling thread, as `with torch.autocast(...)` around each
//! call: its weights are cast inside the call and dropped with the
//! autocast cache when it ends.

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::{Context, ModelKind};
use crate::forward::Forward;
use crate::model::{self, TorchError};
use crate::shim::{AutocastGuard, FloatType};
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use tch::{CModule, Tensor};

pub struct Autocast;

impl PrecisionMethod for Autocast {
    fn method(&self) -> Method {
        Method::Autocast
    }

    /// TorchScript models: an AOTInductor package is compiled for its
    /// precision, a prequantized model runs only as INT8.
    fn applies(&self, ctx: &Context) -> bool {
        ctx.model.kind == ModelKind::TorchScript
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let Some(to) = lower_type(precision) else {
            return Err(ctx.unsupported(
                precision,
                Method::Autocast,
                format!("autocast runs in fp16 or bf16, not {precision}"),
            ));
        };
        // A fresh FP32 copy on the device: the TorchScript executor keeps
        // what it optimised for the calls it has seen, so the reference
        // model, run without autocast, is not reused.
        let module = model::load_on(&ctx.model.path, &ctx.model.bytes, ctx.tch_device())
            .map_err(|e| ctx.failed(precision, Method::Autocast, e.to_string()))?;
        let mut result = ctx.result(precision, Status::Ok, Method::Autocast, String::new());
        let which = if ctx.is_cuda() { "CUDA" } else { "CPU" };
        result.notes.push(format!(
            "the FP32 model under libtorch's {which} autocast to {precision}, FP32 inputs; each \
             forward() call is one autocast region, as torch.autocast around each call"
        ));
        Ok(Prepared::Module(Runnable {
            module: ModuleRef::Owned(Box::new(Autocasted::new(module, ctx.is_cuda(), to))),
            inputs: ctx.inputs.iter().map(Tensor::shallow_clone).collect(),
            comparison: Comparison::Reference,
            result,
        }))
    }
}

/// The autocast type of `precision`: FP16 and BF16 only.
fn lower_type(precision: Precision) -> Option<FloatType> {
    match precision {
        Precision::Fp16 => Some(FloatType::Float16),
        Precision::Bf16 => Some(FloatType::Bfloat16),
        Precision::Fp32 | Precision::Int8 => None,
    }
}

/// A model whose every call runs under autocast.
pub struct Autocasted {
    module: CModule,
    cuda: bool,
    to: FloatType,
}

impl Autocasted {
    pub fn new(module: CModule, cuda: bool, to: FloatType) -> Autocasted {
        Autocasted { module, cuda, to }
    }
}

impl Forward for Autocasted {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TorchError> {
        // Entered and left on this thread, around this call only.
        let _region =
            AutocastGuard::enter(self.cuda, self.to).map_err(TorchError::from_libtorch)?;
        self.module.run(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim;
    use std::path::{Path, PathBuf};
    use tch::Kind;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name)
    }

    fn load(name: &str) -> CModule {
        let path = fixture(name);
        model::load(&path, &std::fs::read(&path).unwrap()).unwrap()
    }

    fn cosine(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let dot = (&a * &b).sum(Kind::Double).double_value(&[]);
        dot / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
    }

    /// The traced GRU's zero hidden state is an FP32 constant in its graph:
    /// the cast model mixes types, autocast runs it in the lower type.
    #[test]
    fn a_traced_float_constant_runs_under_autocast_in_the_lower_type() {
        let _no_grad = tch::no_grad_guard();
        tch::manual_seed(7);
        let x = Tensor::randn([1, 8, 20], (Kind::Float, tch::Device::Cpu));
        let reference = load("traced_float_constant.pt")
            .run(&[x.shallow_clone()])
            .unwrap();
        let path = fixture("traced_float_constant.pt");
        let bytes = std::fs::read(&path).unwrap();
        for (to, kind) in [
            (FloatType::Float16, Kind::Half),
            (FloatType::Bfloat16, Kind::BFloat16),
        ] {
            let cast = shim::cast_floating(&bytes, to).unwrap();
            let cast = model::load(&path, &cast).unwrap();
            let e = cast.run(&[x.to_kind(kind)]).unwrap_err();
            assert!(e.0.contains("same dtype"), "{to:?}: {e}");

            let autocast = Autocasted::new(load("traced_float_constant.pt"), false, to);
            // More calls than the TorchScript executor profiles before it
            // optimises: every one of them runs in the lower type.
            for call in 0..5 {
                let out = autocast.run(&[x.shallow_clone()]).unwrap();
                assert_eq!(out[0].kind(), kind, "{to:?}, call {call}");
                let c = cosine(&out[0], &reference[0]);
                assert!(c > 0.999, "{to:?}: cosine {c}");
                let differs = (&out[0].to_kind(Kind::Float) - &reference[0])
                    .abs()
                    .max()
                    .double_value(&[]);
                assert!(differs > 0.0, "{to:?}: computed in FP32");
            }
            // Autocast ends with the call: the same module runs in FP32 again.
            let plain = load("traced_float_constant.pt")
                .run(&[x.shallow_clone()])
                .unwrap();
            assert_eq!(plain[0].kind(), Kind::Float);
        }
    }

    #[test]
    fn the_autocast_region_restores_the_state_before_it() {
        let _no_grad = tch::no_grad_guard();
        let x = Tensor::randn([1, 16, 32], (Kind::Float, tch::Device::Cpu));
        let module = load("int_buffer.pt");
        {
            let _outer = AutocastGuard::enter(false, FloatType::Float16).unwrap();
            let inner = Autocasted::new(load("int_buffer.pt"), false, FloatType::Bfloat16);
            assert_eq!(
                inner.run(&[x.shallow_clone()]).unwrap()[0].kind(),
                Kind::BFloat16
            );
            // Back in the outer region, in its type.
            assert_eq!(
                module.run(&[x.shallow_clone()]).unwrap()[0].kind(),
                Kind::Half
            );
        }
        assert_eq!(
            module.run(&[x.shallow_clone()]).unwrap()[0].kind(),
            Kind::Float
        );
    }
}
