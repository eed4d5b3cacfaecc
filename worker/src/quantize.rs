//! INT8 on the CPU: static post-training quantization through libtorch's
//! graph-mode passes (see csrc/shim.cpp), or a model that is already
//! quantized, timed as it is.

use crate::calibration::{self, SampleSet};
use crate::job::{compare_outputs, Context};
use crate::{model, shim};
use precisiond::precision::Precision;
use precisiond::report::{CalibrationFacts, Method, PrecisionResult};
use precisiond::settings::{CalibrationSettings, InputSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{CModule, Tensor};

/// Seed of synthetic calibration batches: different from the timing
/// inputs', so accuracy is measured on inputs calibration never saw.
const CALIBRATION_SEED: i64 = 7_000;

/// The quantized engine for this machine: libtorch's x86 engine (fbgemm
/// with oneDNN) on x86, qnnpack on ARM, from those libtorch supports.
pub fn choose_engine(supported: &[String]) -> Option<String> {
    let preferred: &[&str] = if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        &["x86", "fbgemm", "onednn", "qnnpack"]
    } else {
        &["qnnpack", "onednn", "x86", "fbgemm"]
    };
    preferred
        .iter()
        .find(|e| supported.iter().any(|s| s == *e))
        .map(|e| (*e).to_owned())
}

pub(crate) fn measure_int8(ctx: &Context) -> PrecisionResult {
    let p = Precision::Int8;
    let engines = match shim::supported_qengines() {
        Ok(e) => e,
        Err(e) => {
            return ctx.failed(
                p,
                Method::StaticPtq,
                format!("cannot list libtorch's quantized engines: {e}"),
            )
        }
    };
    let Some(engine) = choose_engine(&engines) else {
        return ctx.unsupported(
            p,
            Method::StaticPtq,
            format!("this libtorch has no quantized CPU engine (it reports: {engines:?})"),
        );
    };
    if let Err(e) = shim::set_qengine(&engine) {
        return ctx.failed(
            p,
            Method::StaticPtq,
            format!("cannot select quantized engine {engine}: {e}"),
        );
    }

    if ctx.has_quantized_ops {
        let mut result = ctx.time_module(p, Method::Prequantized, ctx.fp32_module, ctx.inputs);
        result.engine = Some(engine);
        result.notes.push(
            "the model is already quantized (it calls quantized:: operators): timed as it is; there \
             is no FP32 version to compare accuracy or speed with"
                .into(),
        );
        return result;
    }

    let samples = match &ctx.settings.calibration {
        Some(cal) => match calibration::from_folder(cal, ctx.settings_path, ctx.specs) {
            Ok(s) => s,
            Err(e) => return ctx.failed(p, Method::StaticPtq, e),
        },
        None => calibration::synthetic(ctx.specs, CALIBRATION_SEED),
    };

    let artefact = artefact_path(ctx);
    if let Some(dir) = artefact.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return ctx.failed(
                p,
                Method::StaticPtq,
                format!("cannot create state folder {}: {e}", dir.display()),
            );
        }
    }
    let job = QuantizeJob {
        model: ctx.opts.model.clone(),
        out: artefact.clone(),
        engine: engine.clone(),
        threads: ctx.opts.threads,
        inputs: ctx.specs.to_vec(),
        calibration: ctx.settings.calibration.clone(),
        settings_path: ctx.settings_path.to_path_buf(),
    };
    let done = match run_quantize_process(&job) {
        Ok(done) => done,
        Err(e) => {
            let mut result = ctx.failed(p, Method::StaticPtq, e);
            result.engine = Some(engine);
            return result;
        }
    };
    let seconds = done.seconds;
    let warnings = done.warnings;
    if let Some(e) = done.error {
        let mut result = ctx.failed(
            p,
            Method::StaticPtq,
            format!("static quantization failed: {e}"),
        );
        result
            .notes
            .extend(warnings.iter().map(|w| format!("libtorch warned: {w}")));
        result.engine = Some(engine);
        return result;
    }

    let quantized = match CModule::load(&artefact) {
        Ok(mut m) => {
            let _ = m.f_set_eval();
            m
        }
        Err(e) => {
            // Keep no artefact that cannot be deployed.
            let _ = std::fs::remove_file(&artefact);
            return ctx.failed(
                p,
                Method::StaticPtq,
                format!(
                    "libtorch's quantization passes produced a model that does not load: {}",
                    model::clean_torch_error(&e.to_string())
                ),
            );
        }
    };

    let mut result = ctx.time_module(p, Method::StaticPtq, &quantized, ctx.inputs);
    result.engine = Some(engine);
    result.quantization_seconds = Some(seconds);
    result.quantized_model = Some(report_relative(&artefact, &ctx.opts.report));
    result.calibration = Some(CalibrationFacts {
        source: samples.source.clone(),
        samples: samples.calibration.len(),
        held_out: samples.held_out.len(),
        note: samples.notes.join("; "),
    });
    result
        .notes
        .extend(warnings.iter().map(|w| format!("libtorch warned: {w}")));
    if result.latency_ms.is_some() {
        result.accuracy = Some(accuracy_on(ctx, &quantized, &samples));
    }
    result
}

/// Accuracy against FP32 on the held-out samples, or on the timing inputs
/// (which calibration never saw) when none were held out.
fn accuracy_on(
    ctx: &Context,
    quantized: &CModule,
    samples: &SampleSet,
) -> precisiond::accuracy::Accuracy {
    let eval: Vec<Vec<Tensor>> = if samples.held_out.is_empty() {
        vec![ctx.inputs.iter().map(Tensor::shallow_clone).collect()]
    } else {
        samples
            .held_out
            .iter()
            .map(|s| s.iter().map(Tensor::shallow_clone).collect())
            .collect()
    };
    let mut reference: Vec<Vec<Tensor>> = Vec::new();
    let mut outputs: Vec<Vec<Tensor>> = Vec::new();
    for inputs in &eval {
        match (
            model::forward(ctx.fp32_module, inputs),
            model::forward(quantized, inputs),
        ) {
            (Ok(r), Ok(o)) => {
                reference.push(model::output_tensors(&r));
                outputs.push(model::output_tensors(&o));
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = precisiond::accuracy::Accuracy::default();
                acc.worst.why_absent.insert(
                    "cosine".into(),
                    format!("forward() failed on a held-out sample: {e}"),
                );
                return acc;
            }
        }
    }
    // Output i of every sample, stacked along the batch dimension, so each
    // output is compared over all samples at once.
    let stack = |runs: &[Vec<Tensor>]| -> Vec<Tensor> {
        let n = runs.first().map_or(0, Vec::len);
        (0..n)
            .map(|i| {
                let parts: Vec<Tensor> = runs
                    .iter()
                    .filter_map(|r| r.get(i).map(Tensor::shallow_clone))
                    .collect();
                if parts.iter().all(|t| t.dim() > 0) {
                    Tensor::cat(&parts, 0)
                } else {
                    Tensor::stack(&parts, 0)
                }
            })
            .collect()
    };
    compare_outputs(&stack(&reference), &stack(&outputs))
}

/// What the quantizing process is asked to do. libtorch's passes can crash
/// on a model (InsertObservers segfaults on nn.TransformerEncoderLayer's
/// scripted fast path, for one), so they run in a child process of their
/// own: a crash there fails the int8 result, not the whole report.
#[derive(Debug, Serialize, Deserialize)]
pub struct QuantizeJob {
    pub model: PathBuf,
    pub out: PathBuf,
    pub engine: String,
    pub threads: usize,
    pub inputs: Vec<InputSpec>,
    pub calibration: Option<CalibrationSettings>,
    pub settings_path: PathBuf,
}

/// What the quantizing process reports on stdout, as TOML.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QuantizeDone {
    pub seconds: f64,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

fn run_quantize_process(job: &QuantizeJob) -> Result<QuantizeDone, String> {
    let job_file = job.out.with_extension("job.toml");
    let text =
        toml::to_string(job).map_err(|e| format!("cannot describe the quantization job: {e}"))?;
    precisiond::fsutil::write_atomic(&job_file, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", job_file.display()))?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the worker's own path: {e}"))?;
    let output = std::process::Command::new(exe)
        .arg("quantize")
        .arg(&job_file)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the quantizing process: {e}"));
    let _ = std::fs::remove_file(&job_file);
    let output = output?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        log::debug!("quantizing process stderr: {stderr}");
    }
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&output.status) {
        return Err(format!(
            "libtorch's quantization passes crashed on this model (signal {sig}, {}); the other \
             precisions are unaffected",
            precisiond::child::signal_name(sig)
        ));
    }
    toml::from_str(&String::from_utf8_lossy(&output.stdout)).map_err(|e| {
        format!(
            "the quantizing process ended with {} without a result ({e}): {}",
            output.status,
            stderr.trim()
        )
    })
}

/// The quantizing process: `precisiond-worker quantize JOB.toml`.
pub fn quantize_main(job_file: &Path) -> QuantizeDone {
    let run = || -> Result<QuantizeDone, String> {
        let text = std::fs::read_to_string(job_file)
            .map_err(|e| format!("cannot read {}: {e}", job_file.display()))?;
        let job: QuantizeJob = toml::from_str(&text)
            .map_err(|e| format!("bad job file {}: {e}", job_file.display()))?;
        tch::set_num_threads(job.threads as i32);
        let samples = match &job.calibration {
            Some(cal) => calibration::from_folder(cal, &job.settings_path, &job.inputs)?,
            None => calibration::synthetic(&job.inputs, CALIBRATION_SEED),
        };
        let started = Instant::now();
        // Saved under a temporary name and renamed: a killed process never
        // leaves a half-written model where the report points.
        let partial = job.out.with_extension("pt.tmp");
        let outcome =
            shim::quantize_static(&job.model, &partial, &job.engine, &samples.calibration)
                .and_then(|o| {
                    std::fs::rename(&partial, &job.out)
                        .map(|()| o)
                        .map_err(|e| {
                            (
                                format!("cannot move the quantized model into place: {e}"),
                                Vec::new(),
                            )
                        })
                });
        let _ = std::fs::remove_file(&partial);
        let seconds = started.elapsed().as_secs_f64();
        Ok(match outcome {
            Ok(o) => QuantizeDone {
                seconds,
                warnings: o.warnings,
                error: None,
            },
            Err((e, warnings)) => QuantizeDone {
                seconds,
                warnings,
                error: Some(model::clean_torch_error(&e)),
            },
        })
    };
    run().unwrap_or_else(|e| QuantizeDone {
        error: Some(e),
        ..QuantizeDone::default()
    })
}

/// The artefact's path as the report shows it: relative to the report's
/// folder when it lies below it (the drop folder moves as a whole), else
/// absolute.
fn report_relative(artefact: &std::path::Path, report: &std::path::Path) -> String {
    let absolute =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let artefact = absolute(artefact);
    let base = report.parent().map(absolute).unwrap_or_default();
    match artefact.strip_prefix(&base) {
        Ok(rel) if !base.as_os_str().is_empty() => rel.display().to_string(),
        _ => artefact.display().to_string(),
    }
}

/// Where the quantized model is kept: the state folder, named after the
/// model and its hash, so a user can deploy exactly what was timed.
fn artefact_path(ctx: &Context) -> PathBuf {
    let state = ctx.opts.state_dir.clone().unwrap_or_else(|| {
        ctx.opts
            .model
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join(".precisiond")
    });
    let name = precisiond::fsutil::file_name(&ctx.opts.model);
    let hash = precisiond::fsutil::hex_sha256(ctx.bytes);
    state
        .join("quantized")
        .join(format!("{name}.{}.int8.pt", &hash[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_follows_the_architecture_and_what_libtorch_has() {
        let all: Vec<String> = ["qnnpack", "onednn", "x86", "fbgemm"]
            .map(String::from)
            .to_vec();
        let chosen = choose_engine(&all).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(chosen, "x86");
        } else {
            assert_eq!(chosen, "qnnpack");
        }
        assert_eq!(choose_engine(&["qnnpack".to_owned()]).unwrap(), "qnnpack");
        assert_eq!(choose_engine(&[]), None);
    }
}
