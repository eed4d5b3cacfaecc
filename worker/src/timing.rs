//! The one path every libtorch-run result is timed on: warm-up and timed
//! calls under the job's budget (`precisiond_core::bench` decides how many), with
//! the device synchronised around each call on CUDA.

use crate::context::Context;
use crate::energy;
use crate::forward::Forward;
use crate::model::TorchError;
use precisiond_core::bench::{self, BenchConfig, LatencyStats, Measurement, StopReason};
use precisiond_core::conditions::{Conditions, Limits, Quality, Watch};
use precisiond_core::devices::Device;
use precisiond_core::energy::{Energy, Sensor};
use precisiond_core::precision::Precision;
use precisiond_core::report::{PrecisionResult, Retimed, Status};
use std::path::Path;
use std::time::{Duration, Instant};
use tch::Tensor;

/// How CUDA timings are taken, for the report.
const CUDA_TIMING: &str = "host clock around each forward() call, with the CUDA device \
     synchronised (torch::cuda::synchronize) before the first call and after each one";

/// Times `module` on `inputs` into `result` (which keeps what the method
/// set). On a CUDA device the device is synchronised before the first call
/// and after each one, so every time covers the kernels' completion, not
/// their launch alone.
pub fn time(
    ctx: &Context,
    module: &dyn Forward,
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
        module.run(inputs).map(drop)?;
        if let Some(i) = cuda {
            tch::Cuda::synchronize(i);
        }
        Ok::<(), TorchError>(())
    };
    let bench_config = ctx.job.bench;
    let limits = ctx.job.opts.knobs.limits();
    // Energy: the sensor that covers this device, its idle power just
    // before, then a reading across the timed calls.
    let sensor = ctx.sensor;
    let idle = sensor
        .as_ref()
        .map_err(Clone::clone)
        .and_then(energy::idle_power);
    let meter = sensor.as_ref().ok();
    let mut timed = match Timed::take(&bench_config, &limits, call, meter) {
        Ok(t) => t,
        Err(e) => {
            result.status = Status::Failed;
            result.reason = format!("forward() failed in {precision}: {e}");
            return result;
        }
    };
    // Once, inside the same job: the other load may have been brief.
    if timed.quality == Some(Quality::Contended) {
        let first = timed.summary();
        let retimed = Retimed {
            quality: Quality::Contended,
            median_ms: timed.stats.median,
            p90_ms: timed.stats.p90,
        };
        match Timed::take(&bench_config, &limits, call, meter) {
            Ok(again) => {
                result.notes.push(format!(
                    "timed twice: the first timing was contended ({first}); this is the second"
                ));
                result.retimed = Some(retimed);
                timed = again;
            }
            Err(e) => {
                result.status = Status::Failed;
                result.reason = format!("forward() failed in {precision}: {e}");
                return result;
            }
        }
    }
    let Timed {
        measurement,
        stats,
        median_rel_ci,
        conditions,
        quality,
        energy: reading,
    } = timed;
    result.energy = Some(match (sensor, reading) {
        (Err(why), _) => energy::not_read(None, why),
        (Ok(s), Some(Ok((reading, calls)))) => energy::facts(s, &reading, calls, ctx.batch(), idle),
        (Ok(s), Some(Err(why))) => energy::not_read(Some(s), why),
        (Ok(s), None) => energy::not_read(Some(s), "the sensor was not read"),
    });
    if cuda.is_some() {
        result.timing = Some(CUDA_TIMING.to_owned());
    }
    result.throughput_per_s = Some(ctx.batch() as f64 * 1e3 / stats.median);
    result.warmup_iterations = Some(measurement.warmup_iterations);
    result.stop_reason = Some(measurement.stop_reason);
    result.median_rel_ci = median_rel_ci;
    if let Some(quality) = quality.filter(|q| *q != Quality::Clean) {
        result.notes.push(format!(
            "{}: this timing is not the model's speed alone (conditions.why says why); \
             no speedup is computed from it",
            quality.word()
        ));
    }
    result.quality = quality;
    result.conditions = conditions;
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

/// One run of the timed calls, with the conditions they ran under.
struct Timed {
    measurement: Measurement,
    stats: LatencyStats,
    median_rel_ci: Option<f64>,
    /// None when /proc/stat could not be read.
    conditions: Option<Conditions>,
    quality: Option<Quality>,
    /// The sensor's reading across the timed calls (and the calls it
    /// covers), when there is a sensor.
    energy: Option<Result<(Energy, u64), energy::NotRead>>,
}

impl Timed {
    fn take(
        config: &BenchConfig,
        limits: &Limits,
        call: impl Fn() -> Result<(), TorchError>,
        meter: Option<&Sensor>,
    ) -> Result<Timed, TorchError> {
        let watch = Watch::start(Path::new("/"));
        let started = Instant::now();
        let (measurement, energy) = match meter {
            None => (bench::measure(config, &call)?, None),
            Some(sensor) => {
                let mut window = energy::Window::new(sensor);
                let measurement = bench::measure_observed(config, &call, &mut window)?;
                let deadline = started + Duration::from_secs_f64(config.max_seconds.max(0.0));
                let timed_calls = measurement.samples_ms.len() as u64;
                (
                    measurement,
                    Some(window.close(timed_calls, &call, deadline)),
                )
            }
        };
        let mut conditions = watch.finish();
        let stats =
            LatencyStats::from_samples(&measurement.samples_ms).expect("at least one timed call");
        let median_rel_ci = bench::median_relative_ci(&measurement.samples_ms);
        let quality = conditions
            .as_mut()
            .map(|c| c.judge(limits, &stats, median_rel_ci, config.min_iterations));
        Ok(Timed {
            measurement,
            stats,
            median_rel_ci,
            conditions,
            quality,
            energy,
        })
    }

    /// The figures of a timing, in words, for the note of a re-measured one.
    fn summary(&self) -> String {
        let why = self
            .conditions
            .as_ref()
            .map(|c| c.why.join("; "))
            .unwrap_or_default();
        format!(
            "median {:.3} ms, p90 {:.3} ms, {why}",
            self.stats.median, self.stats.p90
        )
    }
}
