//! The verdicts on a measured result, once FP32's timing on the same
//! device is known: its speedup and whether it is accelerated (decided by
//! the model's own speedup interval, `precisiond::speedup`), and whether
//! its outputs are still the model's (`AccuracyThresholds::judge`).

use crate::context::Context;
use precisiond::bench::LatencyStats;
use precisiond::precision::Precision;
use precisiond::report::{Method, PrecisionResult, Status};
use precisiond::speedup;

/// Sets `result`'s speedup against `fp32` (libtorch's FP32 timing on this
/// device, None for FP32 itself or when FP32 was not timed), its
/// acceleration verdict and its accuracy verdict.
pub fn judge(ctx: &Context, result: &mut PrecisionResult, fp32: Option<&LatencyStats>) {
    judge_accuracy(ctx, result);
    let (Some(base), Some(lat)) = (fp32, &result.latency_ms) else {
        return;
    };
    let speedup = base.median / lat.median;
    result.speedup_vs_fp32 = Some(speedup);
    result.speedup_ci_vs_fp32 = speedup::ci(base, lat);
    if result.method == Method::Tensorrt {
        result.notes.push(format!(
            "speedup_vs_fp32 compares TensorRT's GPU compute time with libtorch's FP32 time on {}",
            ctx.device.name()
        ));
    }
    if result.status != Status::Ok || result.precision == Precision::Fp32 {
        return;
    }
    let hardware = ctx
        .job
        .hardware
        .verdict(&ctx.device.hardware_key(), result.precision.name());
    let probe = hardware.and_then(|v| v.accelerated);
    let probe_reason = hardware.map_or("no hardware verdict", |v| v.reason.as_str());
    let decision = speedup::decide(speedup, result.speedup_ci_vs_fp32, probe, probe_reason);
    result.probe_accelerated = probe;
    result.accelerated = decision.accelerated;
    result.accelerated_by = Some(decision.by);
    result.notes.extend(decision.note);
}

fn judge_accuracy(ctx: &Context, result: &mut PrecisionResult) {
    let Some(accuracy) = &result.accuracy else {
        return;
    };
    match ctx.job.accuracy.judge(accuracy) {
        Ok(()) => result.accuracy_ok = Some(true),
        Err(why) => {
            result.accuracy_ok = Some(false);
            result.accuracy_reason = Some(why);
        }
    }
}
