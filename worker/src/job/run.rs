//! The second step of a job: every precision of the model on every device
//! (`plan::Targets`), FP32 first, each through the plan's method
//! (`crate::measure`) inside its own memory window and judged against FP32
//! on the same device (`crate::verdict`); then, for an AOTInductor family
//! whose settings link a TorchScript file, that file the same way, and the
//! two runtimes' medians side by side.

use super::load;
use super::progress::Progress;
use crate::context::{Context, Job, Model, ModelKind};
use crate::cuda::{self, MemoryWindow};
use crate::measure::{self, panic_message};
use crate::plan::{self, Linked, Targets};
use crate::{model, verdict};
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{self, Method, PrecisionResult, Report, Status};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use tch::Tensor;

/// Measures `model`, the model of `job`, into `report`.
pub fn run(job: &Job, model: Model, report: &mut Report) {
    let targets = targets(job);
    if let Some(cause) = &targets.no_cuda {
        report
            .notes
            .push(format!("{cause}: the report has no CUDA results"));
    }
    let mut progress = Progress::new(targets.steps(), model.kind);
    measure_model(job, &model, &targets, &mut progress, report);
    match plan::linked(job.settings.torchscript.as_deref(), model.kind) {
        Some(Linked::Measure(named)) => {
            if let Err(why) = beside(job, &model, named, &targets, &mut progress, report) {
                report.notes.push(format!(
                    "the TorchScript model the settings file links (torchscript = {named:?}) was \
                     not measured beside the packages: {why}"
                ));
            }
        }
        Some(Linked::Ignored(note)) => report.notes.push(note),
        None => {}
    }
}

/// The precisions and devices the job asks for, else the settings file's,
/// else the knobs' (every precision on every device by default), against
/// what libtorch sees.
fn targets(job: &Job) -> Targets {
    let effective = job.opts.with_settings(&job.settings);
    let (precisions, requests) = (effective.precisions, effective.devices);
    Targets::new(
        &precisions,
        &requests,
        cuda::usable_devices(),
        &cuda::no_cuda_cause(&job.hardware),
    )
}

/// Every precision of `model` on every device of `targets`, into `report`.
fn measure_model(
    job: &Job,
    model: &Model,
    targets: &Targets,
    progress: &mut Progress,
    report: &mut Report,
) {
    for &device in &targets.devices {
        match on_device(&job.inputs, device) {
            Ok(inputs) => {
                let sensor = crate::energy::sensor_for(device);
                let ctx = Context {
                    job,
                    model,
                    device,
                    inputs: &inputs,
                    sensor: &sensor,
                };
                measure_device(&ctx, &targets.precisions, progress, report);
            }
            Err(why) => {
                let failed = (Status::Failed, why.as_str());
                none_measured(device, &targets.precisions, failed, progress, report);
            }
        }
    }
    for (device, why) in &targets.missing {
        let unsupported = (Status::Unsupported, why.as_str());
        none_measured(*device, &targets.precisions, unsupported, progress, report);
    }
}

/// The job's inputs on `device`: moved once, every precision casts them
/// there.
fn on_device(inputs: &[Tensor], device: Device) -> Result<Vec<Tensor>, String> {
    let Device::Cuda(index) = device else {
        return Ok(inputs.iter().map(Tensor::shallow_clone).collect());
    };
    let moved = panic::catch_unwind(AssertUnwindSafe(|| {
        inputs
            .iter()
            .map(|t| t.f_to_device(tch::Device::Cuda(index)))
            .collect::<Result<Vec<Tensor>, _>>()
    }));
    let why = match moved {
        Ok(Ok(moved)) => return Ok(moved),
        Ok(Err(e)) => model::clean_torch_error(e),
        Err(payload) => panic_message(&payload),
    };
    Err(format!("cannot move the inputs to {device}: {why}"))
}

/// Every precision on one device, FP32 first, each inside its own memory
/// window; speedups are against this device's FP32.
fn measure_device(
    ctx: &Context,
    precisions: &[Precision],
    progress: &mut Progress,
    report: &mut Report,
) {
    let mut fp32 = None;
    for &precision in precisions {
        progress.step(ctx.device, precision, None, report);
        let window = MemoryWindow::start(ctx.device);
        let mut result = measure::planned(ctx, precision);
        window.finish(ctx.device, &mut result);
        if precision == Precision::Fp32 {
            fp32 = result.latency_ms.clone().map(|l| verdict::Fp32Timing {
                latency: l,
                quality: result.quality,
                energy_mj: result
                    .energy
                    .as_ref()
                    .and_then(|e| e.energy_mj_per_inference),
            });
            verdict::judge(ctx, &mut result, None);
        } else {
            verdict::judge(ctx, &mut result, fp32.as_ref());
        }
        report.results.push(result);
        let besides = plan::comparisons_for(ctx.device, precision)
            .into_iter()
            .filter(|_| ctx.model.kind != ModelKind::AotiFamily)
            .filter(|other| other.applies(ctx));
        for other in besides {
            progress.total += 1;
            progress.step(ctx.device, precision, Some(other.method()), report);
            let window = MemoryWindow::start(ctx.device);
            let mut extra = measure::beside(ctx, other, precision);
            window.finish(ctx.device, &mut extra);
            verdict::judge(ctx, &mut extra, fp32.as_ref());
            report.results.push(extra);
        }
    }
}

/// A result for every precision on `device`, none measured, with `status`
/// and its reason.
fn none_measured(
    device: Device,
    precisions: &[Precision],
    (status, why): (Status, &str),
    progress: &mut Progress,
    report: &mut Report,
) {
    for &precision in precisions {
        progress.step(device, precision, None, report);
        report.results.push(PrecisionResult::not_measured(
            device,
            precision,
            status,
            plan::nominal_method(device, precision, progress.kind),
            why.to_owned(),
        ));
    }
}

/// The TorchScript file named in the settings of `family`, an AOTInductor
/// family, measured on the same targets and inputs with the TorchScript
/// methods (its results say `runtime = "torchscript"`), and both runtimes'
/// medians set side by side.
fn beside(
    job: &Job,
    family: &Model,
    named: &Path,
    targets: &Targets,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<(), String> {
    let model = load::linked_torchscript(job, family, named, report)?;
    let first = report.results.len();
    progress.total += targets.steps();
    progress.kind = model.kind;
    measure_model(job, &model, targets, progress, report);
    for result in &mut report.results[first..] {
        result.runtime = Some(report::Runtime::Torchscript);
    }
    report.side_by_side = side_by_side(&report.results);
    Ok(())
}

/// Each (device, precision) both runtimes measured: their medians.
fn side_by_side(results: &[PrecisionResult]) -> Vec<report::RuntimeComparison> {
    let median = |r: &PrecisionResult| {
        (r.status == Status::Ok)
            .then(|| r.latency_ms.as_ref().map(|l| l.median))
            .flatten()
    };
    results
        .iter()
        .filter(|r| r.method == Method::Aoti)
        .filter_map(|aoti| {
            let ts = results.iter().find(|t| {
                t.runtime == Some(report::Runtime::Torchscript)
                    && t.device == aoti.device
                    && t.precision == aoti.precision
            })?;
            let (a, t) = (median(aoti)?, median(ts)?);
            Some(report::RuntimeComparison {
                device: aoti.device,
                precision: aoti.precision,
                aoti_median_ms: a,
                torchscript_median_ms: t,
                aoti_speedup_vs_torchscript: t / a,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use precisiond_core::bench::LatencyStats;

    fn result(
        device: Device,
        precision: Precision,
        method: Method,
        median: f64,
    ) -> PrecisionResult {
        let mut r =
            PrecisionResult::not_measured(device, precision, Status::Ok, method, String::new());
        r.latency_ms = LatencyStats::from_samples(&[median]);
        r
    }

    #[test]
    fn devices_that_measure_nothing_still_get_one_result_per_precision() {
        let precisions = [Precision::Fp32, Precision::Int8];
        let mut progress = Progress::new(2, ModelKind::TorchScript);
        let mut report = precisiond_core::report::skeleton(
            Path::new("m.pt"),
            String::new(),
            0,
            report::now(),
            1,
        );
        let why = (Status::Unsupported, "cuda:1 was asked for");
        none_measured(
            Device::Cuda(1),
            &precisions,
            why,
            &mut progress,
            &mut report,
        );
        let got: Vec<_> = report
            .results
            .iter()
            .map(|r| (r.device, r.precision, r.status, r.method, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Device::Cuda(1),
                    Precision::Fp32,
                    Status::Unsupported,
                    Method::Cast,
                    "cuda:1 was asked for"
                ),
                (
                    Device::Cuda(1),
                    Precision::Int8,
                    Status::Unsupported,
                    Method::Tensorrt,
                    "cuda:1 was asked for"
                ),
            ]
        );
    }

    #[test]
    fn side_by_side_pairs_each_package_with_the_torchscript_result_of_its_step() {
        let mut ts_fp32 = result(Device::Cpu, Precision::Fp32, Method::Cast, 4.0);
        ts_fp32.runtime = Some(report::Runtime::Torchscript);
        let mut ts_bf16 = result(Device::Cpu, Precision::Bf16, Method::Cast, 3.0);
        ts_bf16.runtime = Some(report::Runtime::Torchscript);
        ts_bf16.status = Status::Failed;
        let results = [
            result(Device::Cpu, Precision::Fp32, Method::Aoti, 2.0),
            result(Device::Cpu, Precision::Bf16, Method::Aoti, 1.0),
            // No TorchScript result on this device: nothing to pair.
            result(Device::Cuda(0), Precision::Fp32, Method::Aoti, 1.0),
            ts_fp32,
            ts_bf16,
        ];
        let pairs = side_by_side(&results);
        assert_eq!(pairs.len(), 1, "a failed result has no median to compare");
        let fp32 = &pairs[0];
        assert_eq!(
            (fp32.device, fp32.precision),
            (Device::Cpu, Precision::Fp32)
        );
        assert_eq!(fp32.aoti_median_ms, 2.0);
        assert_eq!(fp32.torchscript_median_ms, 4.0);
        assert_eq!(fp32.aoti_speedup_vs_torchscript, 2.0);
    }
}
