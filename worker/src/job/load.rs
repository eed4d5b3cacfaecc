//! The first step of a job: everything that is fixed before the first
//! measurement. The settings file is read, the hardware detected, the model
//! loaded (a TorchScript file, or an AOTInductor family's FP32 package),
//! its inputs settled (from the settings, inferred from its graph, or
//! from the package's metadata) and its FP32 outputs on them computed: the
//! reference every precision is compared with. What is learnt goes into the
//! report as it comes, so a job that fails here still says how far it got.

use crate::context::{Job, Model, ModelKind};
use crate::cuda::{self, CudaLoad};
use crate::family::{self, Family};
use crate::forward::Forward;
use crate::{model, shim};
use precisiond_core::fsutil::{self, hex_sha256};
use precisiond_core::hardware::{DetectOptions, Hardware};
use precisiond_core::job::JobSpec;
use precisiond_core::report::{self, Report};
use precisiond_core::settings::{self, InputSpec, ModelSettings, SettingsDir};
use precisiond_core::{aoti, state_files};
use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use tch::{CModule, Tensor};

/// Seed of the synthetic inputs: the same inputs for every precision and run.
const INPUT_SEED: i64 = 20_261_128;

/// The job `opts` asks for on the model file that holds `bytes`, loaded,
/// with its FP32 reference.
pub fn load<'a>(
    opts: &'a JobSpec,
    cuda_load: &CudaLoad,
    bytes: Vec<u8>,
    report: &mut Report,
) -> Result<(Job<'a>, Model), String> {
    let (settings, settings_path) = read_settings(opts, report)?;
    // The job's lists, budget and thresholds with the settings file's applied.
    let effective = opts.with_settings(&settings);
    let bench = effective.bench;
    report.run.max_seconds = bench.max_seconds;
    let hardware = detect_hardware(opts, cuda_load, report)?;
    let settings_dir = SettingsDir::of(&settings_path, opts.untrusted_folder);
    // Before the model: what they register is what its code calls.
    let op_libraries = crate::libs::load_named(&opts.knobs.op_libraries, &settings, &settings_dir)
        .map_err(|e| e.to_string())?;
    if !op_libraries.is_empty() {
        report.notes.push(op_libraries_note(&op_libraries));
    }
    let Loaded {
        model,
        specs,
        inputs,
    } = if aoti::is_pt2(&opts.model) {
        load_family(opts, bytes, &settings, &settings_dir, &hardware, report)?
    } else {
        load_torchscript(opts, bytes, &settings, &settings_path, report)?
    };
    let accuracy = effective.accuracy;
    report.run.accuracy = Some(accuracy);
    let job = Job {
        opts,
        settings,
        settings_dir,
        hardware,
        bench,
        accuracy,
        specs,
        inputs,
        trtexec: OnceCell::new(),
    };
    Ok((job, model))
}

/// The settings file the options name, else `MODEL.toml` beside the model
/// where there is one (else no settings), with its path.
fn read_settings(opts: &JobSpec, report: &mut Report) -> Result<(ModelSettings, PathBuf), String> {
    let settings_path = opts.settings_path();
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
    Ok((settings, settings_path))
}

/// The hardware detection, into the report. The probe's result is kept
/// per boot and libtorch in the state folder.
fn detect_hardware(
    opts: &JobSpec,
    cuda_load: &CudaLoad,
    report: &mut Report,
) -> Result<Hardware, String> {
    let probe_dir = opts.knobs.probe.then(|| {
        fsutil::ensure_state_subdir(&opts.state_dir, state_files::PROBE_DIR)
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
            probe: opts.knobs.probe,
            threads: Some(opts.knobs.threads),
        },
        &torch,
    )
    .map_err(|e| format!("hardware detection failed: {e:#}"))?;
    hardware.notes.push(cuda::libraries_note(cuda_load));
    report.hardware = Some(hardware.clone());
    Ok(hardware)
}

/// A model as loaded, with the inputs it settled, which the whole job
/// runs on.
struct Loaded {
    model: Model,
    specs: Vec<InputSpec>,
    inputs: Vec<Tensor>,
}

/// The report's note on the operator libraries loaded for the model.
fn op_libraries_note(paths: &[PathBuf]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!(
        "operator libraries loaded before the model: {}",
        paths.join(", ")
    )
}

/// A TorchScript file loaded in FP32, with what libtorch says of its
/// interface: its kind is decided here, for the job's own model and for
/// the one an AOTInductor family's settings link alike. The operator
/// namespaces its code calls are checked first (torchvision's library
/// loaded where they include `torchvision`; a note says so).
fn open_torchscript(
    path: &Path,
    bytes: &[u8],
    notes: &mut Vec<String>,
) -> Result<(CModule, shim::ModuleInfo, ModelKind), String> {
    if let Some(loaded) = crate::libs::ensure_operators(bytes).map_err(|e| e.to_string())? {
        notes.push(op_libraries_note(&[loaded]));
    }
    let module = model::load(path, bytes).map_err(|e| e.to_string())?;
    let info = shim::module_info(bytes).map_err(model::clean_torch_error)?;
    let kind = if info.has_quantized_ops {
        ModelKind::Prequantized
    } else {
        ModelKind::TorchScript
    };
    Ok((module, info, kind))
}

fn load_torchscript(
    opts: &JobSpec,
    bytes: Vec<u8>,
    settings: &ModelSettings,
    settings_path: &Path,
    report: &mut Report,
) -> Result<Loaded, String> {
    let (module, info, kind) = open_torchscript(&opts.model, &bytes, &mut report.notes)?;
    let specs: Vec<InputSpec> = if settings.inputs.is_empty() {
        report.input_source = Some(report::InputSource::Inferred);
        let inferred = model::infer_inputs(&module, &bytes, &info, settings_path)
            .map_err(|e| e.to_string())?;
        report.inputs_inferred_from = inferred.iter().map(|i| i.from.clone()).collect();
        inferred.into_iter().map(|i| i.spec).collect()
    } else {
        report.input_source = Some(report::InputSource::Settings);
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
    let tried = specs.clone();
    let (specs, inputs, reference, also_tried) =
        first_forward(&module, specs, inferred, settings_path, &mut report.notes);
    // The rank retry took another shape than the one inferred.
    for ((from, used), first) in report
        .inputs_inferred_from
        .iter_mut()
        .zip(&specs)
        .zip(&tried)
    {
        if used.shape != first.shape {
            from.push_str(&format!(
                "; forward() rejected {:?}, so {:?} was used (see the notes)",
                first.shape, used.shape
            ));
        }
    }
    report.inputs = specs.clone();
    let reference = reference.map_err(|e| {
        inputs_failed(
            "the model's forward()",
            &specs,
            report,
            &format!("{e}{also_tried}"),
            settings_path,
        )
    })?;
    let reference = model::output_tensors(&reference);
    if reference.is_empty() {
        return Err(
            "the model's forward() returned no tensors: there is nothing to compare".into(),
        );
    }
    Ok(Loaded {
        model: Model {
            path: opts.model.clone(),
            sha256: report.model.sha256.clone(),
            bytes,
            state_dir: opts.state_dir.clone(),
            kind,
            module: Box::new(module),
            reference,
            family: None,
        },
        specs,
        inputs,
    })
}

/// Why the model (`what`) failed on `specs`' inputs (`error`), and where to
/// describe the inputs if they are not the model's.
fn inputs_failed(
    what: &str,
    specs: &[InputSpec],
    report: &Report,
    error: &str,
    settings_path: &Path,
) -> String {
    let shapes: Vec<String> = specs.iter().map(ToString::to_string).collect();
    format!(
        "{what} failed on inputs {} ({}): {error}. If these are not its inputs, describe \
         them in {}, for example:\n\n{}\n",
        shapes.join(", "),
        report.input_source.map(|s| s.word()).unwrap_or_default(),
        settings_path.display(),
        settings::EXAMPLE
    )
}

/// An AOTInductor family: its packages read and judged, the FP32 package
/// loaded (from a private copy of what was hashed) and run on the inputs
/// the settings file or the package's metadata describe.
fn load_family(
    opts: &JobSpec,
    bytes: Vec<u8>,
    settings: &ModelSettings,
    settings_dir: &SettingsDir,
    hardware: &Hardware,
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
    let target = aoti::Target {
        cpu: &cpu,
        machine: std::env::consts::ARCH,
        cuda_capabilities: &capabilities,
    };
    if let Some((head, precision)) = aoti::variant_of(&opts.model) {
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
        bytes.clone(),
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
        report.input_source = Some(report::InputSource::Settings);
        settings.inputs.clone()
    } else if let Some(text) = family.head.metadata.get(aoti::keys::INPUTS) {
        report.input_source = Some(report::InputSource::PackageMetadata);
        ModelSettings::parse(text)
            .map_err(|e| {
                format!(
                    "{}: its `{}` metadata: {e}",
                    family.head.file,
                    aoti::keys::INPUTS
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
    let module = family::load(&family.head, &opts.state_dir).map_err(|e| e.to_string())?;
    let inputs = model::synthetic_inputs(&specs, INPUT_SEED);
    let reference = module.run(&inputs).map_err(|e| {
        inputs_failed(
            &family.head.file,
            &specs,
            report,
            &e.to_string(),
            settings_dir.settings_path(),
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
        model: Model {
            path: opts.model.clone(),
            sha256: report.model.sha256.clone(),
            bytes,
            state_dir: opts.state_dir.clone(),
            kind: ModelKind::AotiFamily,
            module: Box::new(module),
            reference,
            family: Some(family),
        },
        specs,
        inputs,
    })
}

/// The TorchScript file that the settings of `job`'s AOTInductor family
/// link (`torchscript = "…"`), loaded when its turn comes (so that it takes
/// no memory while the packages are measured), with its FP32 outputs on
/// the family's inputs. Both files should be one model: how far their FP32
/// outputs agree goes into the report's notes.
pub fn linked_torchscript(
    job: &Job,
    family: &Model,
    named: &Path,
    report: &mut Report,
) -> Result<Model, String> {
    let path = job
        .settings_dir
        .resolve("torchscript", named)
        .map_err(|e| e.to_string())?;
    let bytes = fsutil::read(&path, job.opts.untrusted_folder)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha256 = hex_sha256(&bytes);
    report.model.torchscript = Some(report::LinkedFile {
        file: named.display().to_string(),
        sha256: sha256.clone(),
        bytes: bytes.len() as u64,
    });
    let (module, _, kind) = open_torchscript(&path, &bytes, &mut report.notes)?;
    let reference = module
        .run(&job.inputs)
        .map_err(|e| format!("its forward() failed on the family's inputs: {e}"))?;
    // Two files of one model should give one answer in FP32: said, so a
    // link to another model shows.
    let agreement = crate::compare::outputs(&family.reference, &reference);
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
    Ok(Model {
        state_dir: job.opts.state_dir.clone(),
        path,
        bytes,
        sha256,
        kind,
        module: Box::new(module),
        reference,
        family: None,
    })
}

/// The model's first forward() in FP32, on `specs`' synthetic inputs. An
/// inferred `[batch, features]` input a transformer rejects for its rank is
/// tried once more as `[batch, sequence, features]`; when that works, the
/// specs and inputs returned are the retry's and a note says so, otherwise
/// the last string says how the retry failed (empty when none was tried).
fn first_forward(
    module: &CModule,
    specs: Vec<InputSpec>,
    inferred: bool,
    settings_path: &Path,
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
