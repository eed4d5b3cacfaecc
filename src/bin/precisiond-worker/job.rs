//! One measurement job, as the worker process runs it: load the model, build
//! its inputs, then for each precision prepare, warm up, time and compare
//! with FP32, and write the report.
//!
//! This is the only part of precisiond that loads libtorch; it runs in its
//! own process so that a crash inside libtorch ends only this job.

use crate::{model, quantize, shim};
use precisiond::accuracy::{self, Accuracy};
use precisiond::bench::{self, BenchConfig, LatencyStats, StopReason};
use precisiond::facts::{file_name, hex_sha256, host_name};
use precisiond::hardware::{DetectOptions, Hardware};
use precisiond::precision::Precision;
use precisiond::report::{self, Method, ModelFacts, PrecisionResult, Report, RunFacts, Status};
use precisiond::settings::{self, InputSpec, ModelSettings};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tch::{CModule, Tensor};

/// Seed of the synthetic inputs: the same inputs for every precision and run.
const INPUT_SEED: i64 = 20_261_128;

#[derive(Debug, Clone)]
pub struct JobOptions {
    pub model: PathBuf,
    pub report: PathBuf,
    /// None: the settings file's list, else the default set.
    pub precisions: Option<Vec<Precision>>,
    pub threads: usize,
    /// None: `MODEL.toml` beside the model when it exists.
    pub settings: Option<PathBuf>,
    pub bench: BenchConfig,
    /// Folder for artefacts (quantized models); default `.precisiond/` beside the model.
    pub state_dir: Option<PathBuf>,
    pub probe: bool,
}

pub const DEFAULT_PRECISIONS: [Precision; 4] = Precision::ALL;

/// What a job ended with: a report that says ok, or one that says failed.
pub struct JobOutcome {
    pub report: Report,
}

/// Runs the job and writes its report. Errors before a report can be
/// written (the model file is missing or unreadable) come back as `Err`.
pub fn run_job(opts: &JobOptions) -> Result<JobOutcome, String> {
    let started = report::now();
    let bytes = std::fs::read(&opts.model)
        .map_err(|e| format!("cannot read model {}: {e}", opts.model.display()))?;
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        status: Status::Ok,
        error: None,
        model: ModelFacts {
            file: file_name(&opts.model),
            sha256: hex_sha256(&bytes),
            bytes: bytes.len() as u64,
            format: "torchscript".into(),
            settings_file: None,
            settings_sha256: None,
        },
        run: RunFacts {
            started,
            finished: started,
            precisiond: env!("CARGO_PKG_VERSION").into(),
            libtorch: shim::libtorch_version(),
            threads: opts.threads,
            host: host_name(),
            max_seconds: opts.bench.max_seconds,
            target_rel_ci: opts.bench.target_rel_ci,
        },
        input_source: None,
        inputs: Vec::new(),
        notes: Vec::new(),
        hardware: None,
        results: Vec::new(),
    };

    tch::set_num_threads(opts.threads as i32);
    let _no_grad = tch::no_grad_guard();

    shim::collect_warnings();
    if let Err(error) = measure_all(opts, &bytes, &mut report) {
        report.status = Status::Failed;
        report.error = Some(error);
    }
    for warning in shim::take_warnings() {
        log::info!("libtorch warned: {warning}");
        report.notes.push(format!("libtorch warned: {warning}"));
    }
    report.run.finished = report::now();
    report
        .write(&opts.report)
        .map_err(|e| format!("cannot write report {}: {e}", opts.report.display()))?;
    Ok(JobOutcome { report })
}

fn measure_all(opts: &JobOptions, bytes: &[u8], report: &mut Report) -> Result<(), String> {
    let settings_path = opts
        .settings
        .clone()
        .unwrap_or_else(|| settings::default_path(&opts.model));
    let settings = if settings_path.exists() {
        let text = std::fs::read(&settings_path)
            .map_err(|e| format!("cannot read settings file {}: {e}", settings_path.display()))?;
        report.model.settings_file = Some(settings_path.display().to_string());
        report.model.settings_sha256 = Some(hex_sha256(&text));
        ModelSettings::load(&settings_path)?
    } else if opts.settings.is_some() {
        return Err(format!(
            "settings file {} does not exist; write it, for example:\n\n{}\n",
            settings_path.display(),
            settings::EXAMPLE
        ));
    } else {
        ModelSettings::default()
    };
    let mut bench_config = opts.bench;
    if let Some(seconds) = settings.max_seconds {
        bench_config.max_seconds = seconds;
        report.run.max_seconds = seconds;
    }
    let precisions = opts
        .precisions
        .clone()
        .or_else(|| settings.precisions.clone())
        .unwrap_or_else(|| DEFAULT_PRECISIONS.to_vec());

    let hardware = precisiond::hardware::detect(
        &DetectOptions {
            cpuinfo: None,
            probe: opts.probe,
            threads: Some(opts.threads),
        },
        &crate::probe::LinkedLibtorch,
    )
    .map_err(|e| format!("hardware detection failed: {e:#}"))?;
    report.hardware = Some(hardware.clone());

    let fp32_module = model::load(&opts.model, bytes)?;
    let info = shim::module_info(&opts.model).map_err(|e| model::clean_torch_error(&e))?;

    let specs: Vec<InputSpec> = if settings.inputs.is_empty() {
        report.input_source = Some("inferred".into());
        vec![model::infer_input(
            &fp32_module,
            info.num_required,
            &settings_path,
        )?]
    } else {
        report.input_source = Some("settings".into());
        let given = settings.inputs.len();
        if given < info.num_required || given > info.num_inputs {
            return Err(format!(
                "{} describes {given} inputs but the model's forward() takes {}",
                settings_path.display(),
                if info.num_required == info.num_inputs {
                    info.num_inputs.to_string()
                } else {
                    format!("{} to {}", info.num_required, info.num_inputs)
                }
            ));
        }
        settings.inputs.clone()
    };
    report.inputs = specs.clone();
    let inputs = model::synthetic_inputs(&specs, INPUT_SEED);

    // The FP32 reference: also the check that these inputs fit the model.
    let reference = model::forward(&fp32_module, &inputs).map_err(|e| {
        let shapes: Vec<String> = specs.iter().map(ToString::to_string).collect();
        format!(
            "the model's forward() failed on inputs {} ({}): {e}. If these are not the model's \
             inputs, describe them in {}, for example:\n\n{}\n",
            shapes.join(", "),
            report.input_source.as_deref().unwrap_or_default(),
            settings_path.display(),
            settings::EXAMPLE
        )
    })?;
    let reference = model::output_tensors(&reference);
    if reference.is_empty() {
        return Err(
            "the model's forward() returned no tensors: there is nothing to compare".into(),
        );
    }

    let ctx = Context {
        opts,
        bytes,
        hardware: &hardware,
        bench: bench_config,
        inputs: &inputs,
        reference: &reference,
        fp32_module: &fp32_module,
        has_quantized_ops: info.has_quantized_ops,
        settings: &settings,
        settings_path: &settings_path,
        specs: &specs,
    };
    let total = precisions.len();
    let mut fp32_median = None;
    // FP32 first, whatever the order asked for: the others' speedups need it.
    let mut ordered = precisions.clone();
    ordered.sort_by_key(|p| *p != Precision::Fp32);
    for (index, precision) in ordered.into_iter().enumerate() {
        progress("cpu", precision, index + 1, total);
        let mut result = match panic::catch_unwind(AssertUnwindSafe(|| ctx.measure(precision))) {
            Ok(result) => result,
            Err(payload) => PrecisionResult::not_measured(
                "cpu",
                precision,
                Status::Failed,
                Method::Cast,
                format!("libtorch failed: {}", panic_message(&payload)),
            ),
        };
        if precision == Precision::Fp32 {
            fp32_median = result.latency_ms.as_ref().map(|l| l.median);
        } else if let (Some(base), Some(lat)) = (fp32_median, &result.latency_ms) {
            result.speedup_vs_fp32 = Some(base / lat.median);
        }
        report.results.push(result);
    }
    Ok(())
}

pub(crate) struct Context<'a> {
    pub(crate) opts: &'a JobOptions,
    pub(crate) bytes: &'a [u8],
    pub(crate) hardware: &'a Hardware,
    pub(crate) bench: BenchConfig,
    pub(crate) inputs: &'a [Tensor],
    pub(crate) reference: &'a [Tensor],
    pub(crate) fp32_module: &'a CModule,
    pub(crate) has_quantized_ops: bool,
    pub(crate) settings: &'a ModelSettings,
    pub(crate) settings_path: &'a Path,
    pub(crate) specs: &'a [InputSpec],
}

impl Context<'_> {
    fn measure(&self, precision: Precision) -> PrecisionResult {
        let device = "cpu";
        let verdict = self.hardware.verdict(device, precision.name());
        let mut result = match precision {
            Precision::Int8 => quantize::measure_int8(self),
            _ if self.has_quantized_ops => PrecisionResult::not_measured(
                device,
                precision,
                Status::Skipped,
                Method::Cast,
                "the model is already quantized (it calls quantized:: operators): it runs only as \
                 int8, see the int8 result"
                    .into(),
            ),
            _ => self.measure_cast(precision),
        };
        if let Some(v) = verdict {
            result.native = v.native;
            result.accelerated = v.accelerated;
            if !v.native && result.status == Status::Ok {
                result.notes.push(format!(
                    "EMULATED: this CPU has no {precision} arithmetic ({}); do not plan a deployment on this timing",
                    v.reason
                ));
            } else if v.accelerated == Some(false) && result.status == Status::Ok {
                result
                    .notes
                    .push(format!("not accelerated here: {}", v.reason));
            }
        }
        result
    }

    fn measure_cast(&self, precision: Precision) -> PrecisionResult {
        let kind = model::cast_kind(precision).expect("cast precisions have a kind");
        let module = if precision == Precision::Fp32 {
            None
        } else {
            match model::load(&self.opts.model, self.bytes) {
                // tch's `to` panics on a libtorch error; `measure` turns a
                // panic into a failed result.
                Ok(mut m) => {
                    m.to(tch::Device::Cpu, kind, false);
                    Some(m)
                }
                Err(e) => return self.failed(precision, Method::Cast, e),
            }
        };
        let module = module.as_ref().unwrap_or(self.fp32_module);
        let inputs = model::cast_inputs(self.inputs, kind);
        self.time_and_compare(precision, Method::Cast, module, &inputs)
    }

    pub(crate) fn failed(
        &self,
        precision: Precision,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        PrecisionResult::not_measured("cpu", precision, Status::Failed, method, reason)
    }

    pub(crate) fn unsupported(
        &self,
        precision: Precision,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        PrecisionResult::not_measured("cpu", precision, Status::Unsupported, method, reason)
    }

    /// Times `module` on `inputs` and compares its outputs with FP32's.
    pub(crate) fn time_and_compare(
        &self,
        precision: Precision,
        method: Method,
        module: &CModule,
        inputs: &[Tensor],
    ) -> PrecisionResult {
        let outputs = match model::forward(module, inputs) {
            Ok(out) => model::output_tensors(&out),
            Err(e) => {
                return self.failed(
                    precision,
                    method,
                    format!("forward() failed in {precision}: {e}"),
                )
            }
        };
        let mut result = self.time_module(precision, method, module, inputs);
        if result.latency_ms.is_some() && precision != Precision::Fp32 {
            result.accuracy = Some(compare_outputs(self.reference, &outputs));
        }
        result
    }

    /// Warms up and times `module` on `inputs`.
    pub(crate) fn time_module(
        &self,
        precision: Precision,
        method: Method,
        module: &CModule,
        inputs: &[Tensor],
    ) -> PrecisionResult {
        let measurement =
            match bench::measure(&self.bench, || model::forward(module, inputs).map(drop)) {
                Ok(m) => m,
                Err(e) => {
                    return self.failed(
                        precision,
                        method,
                        format!("forward() failed in {precision}: {e}"),
                    )
                }
            };
        let mut result =
            PrecisionResult::not_measured("cpu", precision, Status::Ok, method, String::new());
        let stats =
            LatencyStats::from_samples(&measurement.samples_ms).expect("at least one timed call");
        let batch = self
            .inputs
            .first()
            .and_then(|t| t.size().first().copied())
            .unwrap_or(1)
            .max(1);
        result.throughput_per_s = Some(batch as f64 * 1e3 / stats.median);
        result.warmup_iterations = Some(measurement.warmup_iterations);
        result.stop_reason = Some(measurement.stop_reason);
        result.median_rel_ci = bench::median_relative_ci(&measurement.samples_ms);
        if measurement.stop_reason == StopReason::TimeBudget
            && stats.iterations < self.bench.min_iterations
        {
            result.notes.push(format!(
                "only {} timed iteration(s) fitted in the {} s budget (one call takes about {:.0} ms): \
                 the statistics are rough; raise --max-seconds for more",
                stats.iterations, self.bench.max_seconds, stats.median
            ));
        }
        result.latency_ms = Some(stats);
        result
    }
}

/// Accuracy of `outputs` against the FP32 `reference`, output by output.
pub fn compare_outputs(reference: &[Tensor], outputs: &[Tensor]) -> Accuracy {
    if reference.len() != outputs.len() {
        let mut acc = Accuracy::default();
        let why = format!(
            "the model returned {} tensors, FP32 returned {}",
            outputs.len(),
            reference.len()
        );
        for metric in ["cosine", "max_abs_error", "sqnr_db"] {
            acc.worst.why_absent.insert(metric.into(), why.clone());
        }
        return acc;
    }
    let mut per_output = Vec::new();
    let mut top1 = None;
    for (index, (r, o)) in reference.iter().zip(outputs).enumerate() {
        match (model::to_f64_vec(r), model::to_f64_vec(o)) {
            (Ok(rv), Ok(ov)) => {
                if index == 0 && r.dim() == 2 {
                    top1 = accuracy::top1_agreement(&rv, &ov, r.size()[1] as usize);
                }
                per_output.push(accuracy::compare_values(&rv, &ov));
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = accuracy::OutputAccuracy::default();
                acc.why_absent
                    .insert("cosine".into(), format!("cannot read the output: {e}"));
                per_output.push(acc);
            }
        }
    }
    accuracy::combine(per_output, top1)
}

/// A line on stdout for the supervisor: which precision is being measured.
fn progress(device: &str, precision: Precision, index: usize, total: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PROGRESS {device} {precision} {index}/{total}");
    let _ = out.flush();
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".into());
    model::clean_torch_error(&text)
}
