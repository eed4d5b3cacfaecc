//! INT8 (and FP16/BF16 beside libtorch's own, for comparison) on a CUDA
//! device through TensorRT's `trtexec`, on an ONNX file of the model:
//! PyTorch's quantized operators run on the CPU only. trtexec builds the
//! engine and times it itself, so the result comes back measured; see
//! `precisiond_core::tensorrt` for the plan, the engine cache and the parsing,
//! and [`run`] for the processes.

#[cfg(test)]
mod flow_tests;
mod run;

use super::{PrecisionMethod, Prepared};
use crate::context::Context;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult};
use precisiond_core::tensorrt::{self, Trtexec, TrtexecError};

const CPU_ONLY: &str = "PyTorch's quantized operators are CPU-only";

pub struct Tensorrt;

impl PrecisionMethod for Tensorrt {
    fn method(&self) -> Method {
        Method::Tensorrt
    }

    /// Beside libtorch's FP16/BF16: only where trtexec and an ONNX file are.
    fn applies(&self, ctx: &Context) -> bool {
        present(ctx)
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let unsupported = |why: String| ctx.unsupported(precision, Method::Tensorrt, why);
        let Device::Cuda(index) = ctx.device else {
            return Err(unsupported("TensorRT runs on CUDA devices only".into()));
        };
        let trt = trtexec(ctx)
            .as_ref()
            .map_err(|why| unsupported(why.to_string()))?;
        let job = ctx.job;
        let onnx = match tensorrt::onnx_for(
            &ctx.model.path,
            job.settings.onnx.as_deref(),
            &job.settings_dir,
        ) {
            Ok(Some(onnx)) => onnx,
            Ok(None) => {
                return Err(unsupported(format!(
                    "TensorRT {} is here ({}), but there is no ONNX file of this model: export \
                     one to {} (torch.onnx.export) or name it in the settings (onnx = \"...\"); \
                     {CPU_ONLY}",
                    trt.version,
                    trt.path.display(),
                    ctx.model.path.with_extension("onnx").display()
                )))
            }
            Err(why) if precision == Precision::Int8 => {
                return Err(unsupported(format!("{why}; {CPU_ONLY}")))
            }
            Err(why) => return Err(unsupported(why.to_string())),
        };
        let gpu = job
            .hardware
            .gpu(ctx.device)
            .map(|g| format!("{} ({})", g.name, g.compute_capability))
            .unwrap_or_else(|| ctx.device.slug());
        let cache = match job
            .settings
            .tensorrt_calibration_cache
            .as_deref()
            .map(|p| job.settings_dir.resolve("tensorrt_calibration_cache", p))
        {
            Some(Err(why)) => return Err(unsupported(why.to_string())),
            Some(Ok(p)) => Some(p),
            None => None,
        };
        let samples = match job
            .settings
            .calibration
            .as_ref()
            .map(|c| job.settings_dir.resolve("calibration.dir", &c.dir))
        {
            Some(Err(why)) => return Err(unsupported(why.to_string())),
            Some(Ok(p)) => Some(p),
            None => None,
        };
        let state = &ctx.model.state_dir;
        let request = run::Request {
            trtexec: trt,
            onnx: &onnx,
            precision,
            device_index: index,
            gpu,
            state_dir: state,
            calibration_cache: cache.as_deref(),
            calibration_samples: samples.as_deref(),
            max_seconds: job.bench.max_seconds,
            batch: ctx.batch(),
            build_timeout: job.opts.knobs.build_timeout(),
        };
        Ok(Prepared::Measured(run::measure(&request)))
    }
}

/// trtexec is here and the settings name an ONNX file or one lies beside
/// the model: TensorRT results beside libtorch's FP16/BF16 are worth adding.
pub fn present(ctx: &Context) -> bool {
    let job = ctx.job;
    trtexec(ctx).is_ok()
        && !matches!(
            tensorrt::onnx_for(
                &ctx.model.path,
                job.settings.onnx.as_deref(),
                &job.settings_dir
            ),
            Ok(None)
        )
}

/// trtexec, looked for once per job.
fn trtexec<'a>(ctx: &Context<'a>) -> &'a Result<Trtexec, TrtexecError> {
    ctx.job.trtexec.get_or_init(|| {
        let found = tensorrt::find(
            ctx.job.opts.knobs.trtexec.as_deref(),
            std::env::var_os("PATH").as_deref(),
        );
        match &found {
            Ok(t) => log::info!("TensorRT {} at {}", t.version, t.path.display()),
            Err(e) => log::info!("no TensorRT: {e}"),
        }
        found
    })
}
