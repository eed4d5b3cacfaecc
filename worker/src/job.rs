//! One measurement job, in the order it happens: read the model and its
//! settings, detect the hardware, load the model and compute the FP32
//! reference, then for each device (the CPU, every CUDA device libtorch
//! sees, or those asked for) and precision measure (`crate::measure`), and
//! write the report.
//!
//! This is the only process of precisiond that loads libtorch; a crash
//! inside libtorch ends only this job.

use crate::context::{Context, Job, JobOptions};
use crate::cuda::{self, CudaLoad, MemoryWindow};
use crate::family::{self, Family};
use crate::forward::Forward;
use crate::measure::{self, panic_message};
use crate::supervisor::send;
use crate::{method, model, plan, shim, verdict};
use precisiond_core::devices::{self, Device, DeviceRequest};
use precisiond_core::fsutil::{self, file_name, hex_sha256};
use precisiond_core::hardware::DetectOptions;
use precisiond_core::precision::Precision;
use precisiond_core::protocol;
use precisiond_core::report::{
    self, host_name, Method, ModelFacts, PrecisionResult, Report, RunFacts, Status,
};
use precisiond_core::settings::{self, InputSpec, ModelSettings, SettingsDir};
use precisiond_core::state_files;
use std::cell::OnceCell;
use std::panic::{self, AssertUnwindSafe};
use tch::Tensor;

/// Seed of the synthetic inputs: the same inputs for every precision and run.
const INPUT_SEED: i64 = 20_261_128;

pub const DEFAULT_PRECISIONS: [Precision; 4] = Precision::ALL;

/// What a job ended with: a report that says ok, or one that says failed.
pub struct JobOutcome {
    pub report: Report,
}

/// Why a job ended without a report.
pub enum JobError {
    /// The model file is missing or unreadable, or the report cannot be
    /// written: the message says what to do.
    Refused(String),
    /// The report could not be written because the disk is full.
    DiskFull(String),
}

/// Runs the job and writes its report. Errors before a report can be
/// written (the model file is missing or unreadable) come back as `Err`.
pub fn run_job(opts: &JobOptions, cuda_load: &CudaLoad) -> Result<JobOutcome, JobError> {
    let started = report::now();
    let libtorch = shim::libtorch_version();
    send(&protocol::WorkerMessage::Libtorch {
        version: libtorch.clone(),
    });
    let bytes = fsutil::read(&opts.model, opts.untrusted_folder).map_err(|e| {
        JobError::Refused(format!("cannot read model {}: {e}", opts.model.display()))
    })?;
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        status: Status::Ok,
        error: None,
        attempts: None,
        model: ModelFacts {
            file: file_name(&opts.model),
            sha256: hex_sha256(&bytes),
            bytes: bytes.len() as u64,
            format: "torchscript".into(),
            settings_file: None,
            settings_sha256: None,
            variants: Vec::new(),
            torchscript: None,
        },
        run: RunFacts {
            started,
            finished: started,
            precisiond: env!("CARGO_PKG_VERSION").into(),
            libtorch,
            threads: opts.threads,
            host: host_name(),
            emulator: precisiond_core::emulation::emulator(),
            started_busy: opts.started_busy,
            max_seconds: opts.bench.max_seconds,
            target_rel_ci: opts.bench.target_rel_ci,
            accuracy: None,
        },
        input_source: None,
        inputs: Vec::new(),
        notes: Vec::new(),
        hardware: None,
        results: Vec::new(),
        side_by_side: Vec::new(),
    };

    if let Some(emulator) = &report.run.emulator {
        report
            .notes
            .push(precisiond_core::emulation::note(emulator));
    }
    if let Some(share) = opts.started_busy {
        report.notes.push(format!(
            "the machine was busy when this job started (other processes used {:.0}% of the CPUs \
             after the daemon's busy_wait_seconds ran out): timings may be contended; see each \
             result's quality",
            share * 100.0
        ));
    }
    tch::set_num_threads(opts.threads as i32);
    let _no_grad = tch::no_grad_guard();

    shim::collect_warnings();
    if let Err(error) = measure_all(opts, cuda_load, &bytes, &mut report) {
        report.status = Status::Failed;
        report.error = Some(error);
    }
    for warning in shim::take_warnings() {
        log::info!("libtorch warned: {warning}");
        report.notes.push(format!("libtorch warned: {warning}"));
    }
    report.run.finished = report::now();
    // The report this one replaces: its medians stay beside the new ones.
    if let Ok(previous) = precisiond_core::report::load(&opts.report) {
        precisiond_core::regression::attach(&previous, &mut report);
    }
    precisiond_core::output::write_report(&report, &opts.report, opts.chart).map_err(|e| {
        let message = format!("cannot write report {}: {e}", opts.report.display());
        if fsutil::is_disk_full(&e) {
            JobError::DiskFull(message)
        } else {
            JobError::Refused(message)
        }
    })?;
    Ok(JobOutcome { report })
}

fn measure_all(
    opts: &JobOptions,
    cuda_load: &CudaLoad,
    bytes: &[u8],
    report: &mut Report,
) -> Result<(), String> {
    let settings_path = opts
        .settings
        .clone()
        .unwrap_or_else(|| settings::default_path(&opts.model));
    let settings = if settings_path.exists() {
        let text = fsutil::read(&settings_path, opts.untrusted_folder)
            .map_err(|e| format!("cannot read settings file {}: {e}", settings_path.display()))?;
        report.model.settings_file = Some(settings_path.display().to_string());
        report.model.settings_sha256 = Some(hex_sha256(&text));
        ModelSettings::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| format!("settings file {}: {e}", settings_path.display()))?
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
    let requests = opts
        .devices
        .clone()
        .or_else(|| settings.devices.clone())
        .unwrap_or_else(devices::default_requests);

    // The probe's result is kept per boot and libtorch in the state folder.
    let probe_dir = opts.probe.then(|| {
        fsutil::ensure_state_subdir(&opts.state_dir(), state_files::PROBE_DIR)
            .map_err(|e| log::warn!("the hardware probe runs uncached: {e}"))
            .ok()
    });
    let torch = crate::probe::CachedProbe {
        dir: probe_dir.flatten(),
        libtorch: report.run.libtorch.clone(),
    };
    let mut hardware = precisiond_core::hardware::detect(
        &DetectOptions {
            cpuinfo: None,
            probe: opts.probe,
            threads: Some(opts.threads),
        },
        &torch,
    )
    .map_err(|e| format!("hardware detection failed: {e:#}"))?;
    hardware.notes.push(cuda::libraries_note(cuda_load));
    report.hardware = Some(hardware.clone());

    let settings_dir = SettingsDir::of(&settings_path, opts.untrusted_folder);
    let loaded = if precisiond_core::aoti::is_pt2(&opts.model) {
        report.model.format = "aoti".into();
        load_family(opts, bytes, &settings, &settings_dir, &hardware, report)?
    } else {
        load_torchscript(opts, bytes, &settings, &settings_path, report)?
    };
    let Loaded {
        module: fp32_module,
        specs,
        inputs,
        reference,
        kind,
        family,
    } = loaded;

    // Which devices: what was asked for, against what libtorch sees.
    let cuda_count = cuda::usable_devices();
    let resolved = devices::resolve(&requests, cuda_count);
    let wants_cuda = requests.iter().any(|r| *r != DeviceRequest::Cpu);
    if cuda_count == 0 && wants_cuda {
        report.notes.push(format!(
            "{}: the report has no CUDA results",
            cuda::no_cuda_cause(&hardware)
        ));
    }

    // Hashed once, when the model was read; the report already holds it.
    let model_sha256 = report.model.sha256.clone();
    let accuracy_thresholds = opts.accuracy.with(&settings.accuracy.unwrap_or_default());
    report.run.accuracy = Some(accuracy_thresholds);
    let job = Job {
        opts,
        bytes,
        sha256: &model_sha256,
        hardware: &hardware,
        bench: bench_config,
        reference: &reference,
        fp32_module: fp32_module.as_ref(),
        kind,
        family: family.as_ref(),
        settings: &settings,
        settings_dir: &settings_dir,
        accuracy: accuracy_thresholds,
        specs: &specs,
        trtexec: OnceCell::new(),
    };
    // FP32 first, whatever the order asked for: the others' speedups need it.
    let mut ordered = precisions.clone();
    ordered.sort_by_key(|p| *p != Precision::Fp32);
    let mut progress = Progress {
        done: 0,
        total: (resolved.devices.len() + resolved.missing.len()) * ordered.len(),
        kind,
    };
    let targets = Targets {
        resolved: &resolved,
        cuda_count,
        hardware: &hardware,
        ordered: &ordered,
    };
    measure_devices(&job, &inputs, &targets, &mut progress, report);
    match (&settings.torchscript, kind) {
        (Some(named), plan::ModelKind::AotiFamily) => {
            if let Err(why) =
                beside_torchscript(&job, named, &inputs, &targets, &mut progress, report)
            {
                report.notes.push(format!(
                    "the TorchScript model the settings file links (torchscript = {named:?}) was \
                     not measured beside the packages: {why}"
                ));
            }
        }
        (Some(named), _) => report.notes.push(format!(
            "`torchscript = {named:?}` in the settings file is for an AOTInductor family \
             (NAME.pt2); this model is TorchScript already, so it was ignored"
        )),
        (None, _) => {}
    }
    Ok(())
}

/// The devices a job measures and how to say why the others are missing.
struct Targets<'a> {
    resolved: &'a devices::Resolved,
    cuda_count: usize,
    hardware: &'a precisiond_core::hardware::Hardware,
    ordered: &'a [Precision],
}

/// Every precision of `job` on every device it measures, into `report`.
fn measure_devices(
    job: &Job,
    inputs: &[Tensor],
    targets: &Targets,
    progress: &mut Progress,
    report: &mut Report,
) {
    let (resolved, cuda_count, hardware, ordered) = (
        targets.resolved,
        targets.cuda_count,
        targets.hardware,
        targets.ordered,
    );
    for &device in &resolved.devices {
        match on_device(inputs, device) {
            Ok(device_inputs) => {
                let sensor = crate::energy::sensor_for(device);
                let ctx = Context {
                    job,
                    device,
                    inputs: &device_inputs,
                    sensor: &sensor,
                };
                measure_device(&ctx, ordered, progress, report);
            }
            Err(why) => {
                let failed = (Status::Failed, why.as_str());
                none_measured(device, ordered, failed, progress, report);
            }
        }
    }
    for &device in &resolved.missing {
        let why = if cuda_count == 0 {
            format!(
                "{device} was asked for, but libtorch sees no CUDA device: {}",
                cuda::no_cuda_cause(hardware)
            )
        } else {
            format!(
                "{device} was asked for, but libtorch sees {cuda_count} CUDA device(s) (cuda:0 to cuda:{})",
                cuda_count - 1
            )
        };
        let unsupported = (Status::Unsupported, why.as_str());
        none_measured(device, ordered, unsupported, progress, report);
    }
}

/// The TorchScript model the settings file links to an AOTInductor family,
/// measured in the same job on the same inputs with the TorchScript
/// methods (its results say `runtime = "torchscript"`), and both runtimes'
/// medians set side by side.
fn beside_torchscript(
    family_job: &Job,
    named: &std::path::Path,
    inputs: &[Tensor],
    targets: &Targets,
    progress: &mut Progress,
    report: &mut Report,
) -> Result<(), String> {
    let opts = family_job.opts;
    let path = family_job
        .settings_dir
        .resolve("torchscript", named)
        .map_err(|e| e.to_string())?;
    let bytes = fsutil::read(&path, opts.untrusted_folder)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha256 = hex_sha256(&bytes);
    report.model.torchscript = Some(report::LinkedFile {
        file: named.display().to_string(),
        sha256: sha256.clone(),
        bytes: bytes.len() as u64,
    });
    let module = model::load(&path, &bytes).map_err(|e| e.to_string())?;
    let info = shim::module_info(&bytes).map_err(model::clean_torch_error)?;
    let reference = module
        .run(inputs)
        .map_err(|e| format!("its forward() failed on the family's inputs: {e}"))?;
    // Two files of one model should give one answer in FP32: said, so a
    // link to another model shows.
    let agreement = crate::compare::outputs(family_job.reference, &reference);
    if let Some(cosine) = agreement.worst.cosine {
        report.notes.push(format!(
            "{} (TorchScript) against the FP32 package in FP32 on the same inputs: cosine \
             {cosine:.6}{}",
            named.display(),
            if cosine < 0.999 {
                "; they do not look like the same model, so the side-by-side medians compare \
                 two different models"
            } else {
                ""
            }
        ));
    }
    let kind = if info.has_quantized_ops {
        plan::ModelKind::Prequantized
    } else {
        plan::ModelKind::TorchScript
    };
    let ts_opts = JobOptions {
        model: path.clone(),
        ..opts.clone()
    };
    let job = Job {
        opts: &ts_opts,
        bytes: &bytes,
        sha256: &sha256,
        hardware: family_job.hardware,
        bench: family_job.bench,
        reference: &reference,
        fp32_module: &module,
        kind,
        family: None,
        settings: family_job.settings,
        settings_dir: family_job.settings_dir,
        accuracy: family_job.accuracy,
        specs: family_job.specs,
        trtexec: OnceCell::new(),
    };
    let first = report.results.len();
    progress.total +=
        (targets.resolved.devices.len() + targets.resolved.missing.len()) * targets.ordered.len();
    progress.kind = kind;
    measure_devices(&job, inputs, targets, progress, report);
    for result in &mut report.results[first..] {
        result.runtime = Some("torchscript".into());
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
                t.runtime.as_deref() == Some("torchscript")
                    && t.device == aoti.device
                    && t.precision == aoti.precision
            })?;
            let (a, t) = (median(aoti)?, median(ts)?);
            Some(report::RuntimeComparison {
                device: aoti.device.clone(),
                precision: aoti.precision,
                aoti_median_ms: a,
                torchscript_median_ms: t,
                aoti_speedup_vs_torchscript: t / a,
            })
        })
        .collect()
}

/// The model as loaded, with the inputs every precision runs on and its
/// FP32 outputs, which every precision is compared with.
struct Loaded {
    module: Box<dyn Forward>,
    specs: Vec<InputSpec>,
    inputs: Vec<Tensor>,
    reference: Vec<Tensor>,
    kind: plan::ModelKind,
    family: Option<Family>,
}

fn load_torchscript(
    opts: &JobOptions,
    bytes: &[u8],
    settings: &ModelSettings,
    settings_path: &std::path::Path,
    report: &mut Report,
) -> Result<Loaded, String> {
    let fp32_module = model::load(&opts.model, bytes).map_err(|e| e.to_string())?;
    let info = shim::module_info(bytes).map_err(model::clean_torch_error)?;

    let specs: Vec<InputSpec> = if settings.inputs.is_empty() {
        report.input_source = Some("inferred".into());
        vec![
            model::infer_input(&fp32_module, info.num_required, settings_path)
                .map_err(|e| e.to_string())?,
        ]
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
    // The FP32 reference: also the check that these inputs fit the model.
    let inferred = settings.inputs.is_empty();
    let (specs, inputs, reference, also_tried) = first_forward(
        &fp32_module,
        specs,
        inferred,
        settings_path,
        &mut report.notes,
    );
    report.inputs = specs.clone();
    let reference = reference.map_err(|e| {
        let shapes: Vec<String> = specs.iter().map(ToString::to_string).collect();
        format!(
            "the model's forward() failed on inputs {} ({}): {e}{also_tried}. If these are not \
             the model's inputs, describe them in {}, for example:\n\n{}\n",
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

    Ok(Loaded {
        module: Box::new(fp32_module),
        specs,
        inputs,
        reference,
        kind: if info.has_quantized_ops {
            plan::ModelKind::Prequantized
        } else {
            plan::ModelKind::TorchScript
        },
        family: None,
    })
}

/// An AOTInductor family: its packages read and judged, the FP32 package
/// loaded (from a private copy of what was hashed) and run on the inputs
/// the settings file or the package's metadata describe.
fn load_family(
    opts: &JobOptions,
    bytes: &[u8],
    settings: &ModelSettings,
    settings_dir: &SettingsDir,
    hardware: &precisiond_core::hardware::Hardware,
    report: &mut Report,
) -> Result<Loaded, String> {
    let cpuinfo =
        std::fs::read_to_string(precisiond_core::hardware::LIVE_CPUINFO).map_err(|e| {
            format!("cannot read /proc/cpuinfo to check the packages' instruction sets: {e}")
        })?;
    let cpu = precisiond_core::hardware::cpuinfo::parse_cpuinfo(&cpuinfo);
    let capabilities: Vec<String> = hardware
        .gpus
        .values()
        .map(|g| g.compute_capability.clone())
        .collect();
    let target = precisiond_core::aoti::Target {
        cpu: &cpu,
        machine: std::env::consts::ARCH,
        cuda_capabilities: &capabilities,
    };
    if let Some((head, precision)) = precisiond_core::aoti::variant_of(&opts.model) {
        return Err(format!(
            "{} is the {precision} package of the family of {}: measure the family with \
             `precisiond run {}` (its FP32 package), which times every package beside it",
            fsutil::file_name(&opts.model),
            fsutil::file_name(&head),
            head.display()
        ));
    }
    let family = Family::read(
        &opts.model,
        bytes.to_vec(),
        settings,
        settings_dir,
        opts.untrusted_folder,
        &target,
    )
    .map_err(|e| e.to_string())?;
    report.model.variants = family.facts();
    if let Err(why) = &family.head.runnable {
        return Err(format!(
            "{}: {why}. Every precision of the family is compared with this FP32 package, so \
             none was measured",
            family.head.file
        ));
    }
    let specs = if !settings.inputs.is_empty() {
        report.input_source = Some("settings".into());
        settings.inputs.clone()
    } else if let Some(text) = family
        .head
        .metadata
        .get(precisiond_core::aoti::keys::INPUTS)
    {
        report.input_source = Some("package metadata".into());
        ModelSettings::parse(text)
            .map_err(|e| {
                format!(
                    "{}: its `{}` metadata: {e}",
                    family.head.file,
                    precisiond_core::aoti::keys::INPUTS
                )
            })?
            .inputs
    } else {
        return Err(format!(
            "cannot tell the inputs of {}: an AOTInductor package does not describe them \
             (packages made by scripts/precisiond-export.py do). Describe them in {}, for \
             example:\n\n{}\n",
            family.head.file,
            settings_dir.settings_path().display(),
            settings::EXAMPLE
        ));
    };
    let module = family::load(&family.head, &opts.state_dir()).map_err(|e| e.to_string())?;
    let inputs = model::synthetic_inputs(&specs, INPUT_SEED);
    let reference = module.run(&inputs).map_err(|e| {
        let shapes: Vec<String> = specs.iter().map(ToString::to_string).collect();
        format!(
            "{} failed on inputs {} ({}): {e}. If these are not its inputs, describe them in \
             {}, for example:\n\n{}\n",
            family.head.file,
            shapes.join(", "),
            report.input_source.as_deref().unwrap_or_default(),
            settings_dir.settings_path().display(),
            settings::EXAMPLE
        )
    })?;
    if reference.is_empty() {
        return Err(format!(
            "{} returned no tensors: there is nothing to compare",
            family.head.file
        ));
    }
    report.inputs = specs.clone();
    Ok(Loaded {
        module: Box::new(module),
        specs,
        inputs,
        reference,
        kind: plan::ModelKind::AotiFamily,
        family: Some(family),
    })
}

/// The model's first forward() in FP32, on `specs`' synthetic inputs. An
/// inferred `[batch, features]` input a transformer rejects for its rank is
/// tried once more as `[batch, sequence, features]`; when that works, the
/// specs and inputs returned are the retry's and a note says so, otherwise
/// the last string says how the retry failed (empty when none was tried).
fn first_forward(
    module: &tch::CModule,
    specs: Vec<InputSpec>,
    inferred: bool,
    settings_path: &std::path::Path,
    notes: &mut Vec<String>,
) -> (
    Vec<InputSpec>,
    Vec<Tensor>,
    Result<tch::IValue, model::TorchError>,
    String,
) {
    let inputs = model::synthetic_inputs(&specs, INPUT_SEED);
    let error = match model::forward(module, &inputs) {
        Ok(out) => return (specs, inputs, Ok(out), String::new()),
        Err(e) => e,
    };
    let retry = match specs.as_slice() {
        [only] if inferred => model::sequence_retry(only, &error),
        _ => None,
    };
    let Some(retry) = retry else {
        return (specs, inputs, Err(error), String::new());
    };
    let retry_inputs = model::synthetic_inputs(std::slice::from_ref(&retry), INPUT_SEED);
    match model::forward(module, &retry_inputs) {
        Err(again) => {
            let tried = format!("; as {retry} it failed too: {again}");
            (specs, inputs, Err(error), tried)
        }
        Ok(out) => {
            notes.push(format!(
                "the inferred input {} was rejected by forward() ({error}); {retry} (batch, \
                 sequence of {}, features) was used instead: describe the inputs in {} if they \
                 are something else",
                specs[0],
                model::RETRY_SEQUENCE_LENGTH,
                settings_path.display()
            ));
            (vec![retry], retry_inputs, Ok(out), String::new())
        }
    }
}

/// A result for every precision on `device`, none measured, with `status`
/// and its reason.
fn none_measured(
    device: Device,
    ordered: &[Precision],
    (status, why): (Status, &str),
    progress: &mut Progress,
    report: &mut Report,
) {
    for &precision in ordered {
        progress.step(device, precision, None, report);
        report.results.push(PrecisionResult::not_measured(
            &device.name(),
            precision,
            status,
            plan::nominal_method(device, precision, progress.kind),
            why.to_owned(),
        ));
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
    ordered: &[Precision],
    progress: &mut Progress,
    report: &mut Report,
) {
    let mut fp32 = None;
    for &precision in ordered {
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
        let beside = plan::comparison_for(ctx.device, precision)
            .filter(|_| ctx.job.kind != plan::ModelKind::AotiFamily);
        if let Some(other) = beside {
            if method::tensorrt::present(ctx) {
                progress.total += 1;
                progress.step(ctx.device, precision, Some(Method::Tensorrt), report);
                let mut extra = measure::beside(ctx, other, precision);
                verdict::judge(ctx, &mut extra, fp32.as_ref());
                report.results.push(extra);
            }
        }
    }
}

/// The progress messages for the supervisor, each followed by the report
/// so far (`protocol::Partial`).
struct Progress {
    done: usize,
    total: usize,
    kind: plan::ModelKind,
}

impl Progress {
    /// Says that the step for `precision` on `device` starts, measured by
    /// `method` (the plan's own when None), and what the report holds so
    /// far: should this process die now, the supervisor still has every
    /// result finished before it.
    fn step(
        &mut self,
        device: Device,
        precision: Precision,
        method: Option<Method>,
        report: &Report,
    ) {
        self.done += 1;
        send(&protocol::WorkerMessage::Progress(protocol::Progress {
            device,
            precision,
            step: self.done,
            total: self.total,
        }));
        let measuring = PrecisionResult::not_measured(
            &device.name(),
            precision,
            Status::Failed,
            method.unwrap_or_else(|| plan::nominal_method(device, precision, self.kind)),
            "the worker ended while measuring this precision".into(),
        );
        send(&protocol::WorkerMessage::Partial(Box::new(
            protocol::Partial {
                measuring: Some(measuring),
                report: report.clone(),
            },
        )));
    }
}
