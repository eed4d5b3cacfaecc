//! One precision on one device, start to end: the plan picks the method,
//! the method prepares the model, then the one timing path and the one
//! comparison path, then the hardware verdict's word on the result. A
//! libtorch panic anywhere becomes a failed result.

use crate::context::Context;
use crate::method::{Comparison, PrecisionMethod, Prepared};
use crate::plan::{self, Planned};
use crate::{compare, model, profile, timing};
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use std::panic::{self, AssertUnwindSafe};

/// The planned result for `precision` on the context's device.
pub fn planned(ctx: &Context, precision: Precision) -> PrecisionResult {
    let mut result = match plan::method_for(ctx.device, precision, ctx.model.kind) {
        Planned::Measure(method) => guarded(ctx, method, precision),
        Planned::NotMeasured {
            status,
            method,
            reason,
        } => ctx.result(precision, status, method, reason.to_owned()),
    };
    apply_verdict(ctx, &mut result);
    result
}

/// A result of `method` beside the planned one (autocast's FP16 next to
/// the cast, TensorRT's next to libtorch's). Autocast runs libtorch's
/// kernels, so it takes the whole hardware verdict; TensorRT takes its
/// `native` flag only.
pub fn beside(
    ctx: &Context,
    method: &dyn PrecisionMethod,
    precision: Precision,
) -> PrecisionResult {
    let mut result = guarded(ctx, method, precision);
    if method.method() != Method::Tensorrt {
        apply_verdict(ctx, &mut result);
    } else if let Some(v) = ctx.job.hardware.verdict(ctx.device, precision) {
        result.native = v.native;
    }
    result
}

/// [`run`], with a libtorch panic turned into a failed result.
fn guarded(ctx: &Context, method: &dyn PrecisionMethod, precision: Precision) -> PrecisionResult {
    let mut result = match panic::catch_unwind(AssertUnwindSafe(|| run(ctx, method, precision))) {
        Ok(result) => result,
        Err(payload) => ctx.failed(
            precision,
            method.method(),
            format!("libtorch failed: {}", panic_message(&payload)),
        ),
    };
    // BF16 below compute capability 8.0 runs only where libtorch allows it.
    if ctx.is_cuda() && precision == Precision::Bf16 && result.status == Status::Failed {
        let native = ctx
            .job
            .hardware
            .verdict(ctx.device, precision)
            .is_none_or(|v| v.native);
        if !native {
            result.status = Status::Unsupported;
            result.reason = format!(
                "libtorch does not run bf16 on this GPU, which has no BF16 arithmetic: {}",
                result.reason
            );
        }
    }
    result
}

/// Prepare, time, compare, then (`--profile`) profile.
fn run(ctx: &Context, method: &dyn PrecisionMethod, precision: Precision) -> PrecisionResult {
    let runnable = match method.prepare(ctx, precision) {
        Err(result) => return result,
        Ok(Prepared::Measured(result)) => return result,
        Ok(Prepared::Module(runnable)) => runnable,
    };
    let module = &*runnable.module;
    // The outputs compared with FP32's: also the check that the prepared
    // model runs at all, before it is timed.
    let outputs = match runnable.comparison {
        Comparison::Reference => match module.run(&runnable.inputs) {
            Ok(out) => Some(out),
            Err(e) => {
                let mut failed = runnable.result;
                failed.status = Status::Failed;
                failed.reason = format!("forward() failed in {precision}: {e}");
                return failed;
            }
        },
        _ => None,
    };
    let mut result = timing::time(ctx, module, &runnable.inputs, runnable.result);
    if result.latency_ms.is_none() {
        return result;
    }
    result.accuracy = match (&runnable.comparison, outputs) {
        (Comparison::Reference, Some(outputs)) => {
            Some(compare::outputs(&ctx.model.reference, &outputs))
        }
        (Comparison::Samples(samples), _) => Some(compare::on_samples(
            ctx.model.module.as_ref(),
            module,
            samples,
        )),
        _ => None,
    };
    // After the timed calls, never among them: profiling slows calls down.
    profile::attach(ctx, module, &runnable.inputs, &mut result);
    result
}

/// What the hardware detection says of this precision on this device:
/// `native` and `accelerated`, and a note when the timing was taken in a
/// format the hardware only emulates. Where the model's timings decide
/// `accelerated` (`crate::verdict`), they replace detection's word on it.
fn apply_verdict(ctx: &Context, result: &mut PrecisionResult) {
    let precision = result.precision;
    let Some(v) = ctx.job.hardware.verdict(ctx.device, precision) else {
        return;
    };
    result.native = v.native;
    result.accelerated = v.accelerated;
    if result.status != Status::Ok {
        return;
    }
    let what = if ctx.is_cuda() { "GPU" } else { "CPU" };
    if !v.native {
        result.notes.push(format!(
            "EMULATED: this {what} has no {precision} arithmetic ({}); do not plan a deployment on this timing",
            v.reason
        ));
    }
}

/// A panic's message, cleaned of libtorch's C++ backtrace.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".into());
    model::clean_torch_error(&text)
}
