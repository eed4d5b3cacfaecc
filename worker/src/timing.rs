//! The one path every libtorch-run result is timed on: warm-up and timed
//! calls under the job's budget (`precisiond::bench` decides how many), with
//! the device synchronised around each call on CUDA.

use crate::context::Context;
use crate::model;
use precisiond::bench::{self, LatencyStats, StopReason};
use precisiond::devices::Device;
use precisiond::precision::Precision;
use precisiond::report::{PrecisionResult, Status};
use tch::{CModule, Tensor};

/// How CUDA timings are taken, for the report.
const CUDA_TIMING: &str = "host clock around each forward() call, with the CUDA device \
     synchronised (torch::cuda::synchronize) before the first call and after each one";

/// Times `module` on `inputs` into `result` (which keeps what the method
/// set). On a CUDA device the device is synchronised before the first call
/// and after each one, so every time covers the kernels' completion, not
/// their launch alone.
pub fn time(
    ctx: &Context,
    module: &CModule,
    inputs: &[Tensor],
    mut result: PrecisionResult,
) -> PrecisionResult {
    let precision: Precision = result.precision;
    let cuda = match ctx.device {
        Device::Cuda(i) => Some(i as i64),
        Device::Cpu => None,
    };
    if let Some(i) = cuda {
        tch::Cuda::synchronize(i);
    }
    let call = || {
        model::forward(module, inputs).map(drop)?;
        if let Some(i) = cuda {
            tch::Cuda::synchronize(i);
        }
        Ok::<(), String>(())
    };
    let bench_config = ctx.job.bench;
    let measurement = match bench::measure(&bench_config, call) {
        Ok(m) => m,
        Err(e) => {
            result.status = Status::Failed;
            result.reason = format!("forward() failed in {precision}: {e}");
            return result;
        }
    };
    if cuda.is_some() {
        result.timing = Some(CUDA_TIMING.to_owned());
    }
    let stats =
        LatencyStats::from_samples(&measurement.samples_ms).expect("at least one timed call");
    result.throughput_per_s = Some(ctx.batch() as f64 * 1e3 / stats.median);
    result.warmup_iterations = Some(measurement.warmup_iterations);
    result.stop_reason = Some(measurement.stop_reason);
    result.median_rel_ci = bench::median_relative_ci(&measurement.samples_ms);
    if measurement.stop_reason == StopReason::CallExceedsBudget {
        result.notes.push(format!(
            "stopped after {} timed call(s): one call takes about {:.0} ms, more than was left of \
             the {} s budget, so the next call was not made; the statistics are rough: raise \
             --max-seconds for more",
            stats.iterations, stats.median, bench_config.max_seconds
        ));
    }
    result.latency_ms = Some(stats);
    result
}
