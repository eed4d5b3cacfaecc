//! The verdicts on a measured result, once FP32's timing on the same
//! device is known: its speedup and whether it is accelerated (decided by
//! the model's own speedup interval, `precisiond_core::speedup`), and whether
//! its outputs are still the model's (`AccuracyThresholds::judge`).

use crate::context::Context;
use precisiond_core::bench::LatencyStats;
use precisiond_core::conditions::Quality;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, SpeedupWithheld, Status};
use precisiond_core::speedup;

/// FP32's timing on a device, which the other precisions' speedups need.
#[derive(Debug, Clone)]
pub struct Fp32Timing {
    pub latency: LatencyStats,
    /// Whether it is the model's speed (`precisiond_core::conditions`).
    pub quality: Option<Quality>,
    /// Its energy per inference, where a sensor was read.
    pub energy_mj: Option<f64>,
}

/// Sets `result`'s speedup against `fp32` (libtorch's FP32 timing on this
/// device, None for FP32 itself or when FP32 was not timed), its
/// acceleration verdict and its accuracy verdict. A speedup from a timing
/// taken under contention or throttling is withheld: a ratio of two
/// numbers that are not the model's speed means nothing, and the
/// acceleration verdict then falls back to hardware detection's.
pub fn judge(ctx: &Context, result: &mut PrecisionResult, fp32: Option<&Fp32Timing>) {
    judge_accuracy(ctx, result);
    let fp32_energy = fp32.and_then(|f| f.energy_mj);
    if let (Some(base), Some(e)) = (fp32_energy, result.energy.as_mut()) {
        e.energy_vs_fp32 = e.energy_mj_per_inference.map(|mj| mj / base);
    }
    let (Some(fp32), Some(lat)) = (fp32, &result.latency_ms) else {
        return;
    };
    let base = &fp32.latency;
    let spoiled = |q: Option<Quality>| q.is_some_and(|q| q != Quality::Clean);
    if spoiled(fp32.quality) || spoiled(result.quality) {
        let (why, which) = if spoiled(fp32.quality) {
            (
                SpeedupWithheld::Fp32Unclean,
                format!("FP32's timing on {} was", ctx.device),
            )
        } else {
            (SpeedupWithheld::Unclean, "this timing was".to_owned())
        };
        result.speedup_withheld = Some(why);
        result.notes.push(format!(
            "speedup_vs_fp32 withheld: {which} taken under contention or throttling (see quality \
             and conditions); measure again on a quiet machine"
        ));
        if let Some(v) = ctx.job.hardware.verdict(ctx.device, result.precision) {
            result.probe_accelerated = v.accelerated;
            result.accelerated = v.accelerated;
            result.accelerated_by = Some(precisiond_core::speedup::AcceleratedBy::Probe);
        }
        return;
    }
    let speedup = base.median / lat.median;
    result.speedup_vs_fp32 = Some(speedup);
    result.speedup_ci_vs_fp32 = speedup::ci(base, lat);
    if result.method == Method::Tensorrt {
        result.notes.push(format!(
            "speedup_vs_fp32 compares TensorRT's GPU compute time with libtorch's FP32 time on {}",
            ctx.device
        ));
    }
    if result.status != Status::Ok || result.precision == Precision::Fp32 {
        return;
    }
    let hardware = ctx.job.hardware.verdict(ctx.device, result.precision);
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
