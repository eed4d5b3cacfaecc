//! INT8 on the CPU: static post-training quantization through libtorch's
//! graph-mode passes (see csrc/shim.cpp), or a model that is already
//! quantized, timed as it is.

use crate::calibration::{self, SampleSet};
use crate::job::{compare_outputs, Context};
use crate::{model, shim};
use precisiond::precision::Precision;
use precisiond::report::{CalibrationFacts, Method, PrecisionResult};
use std::path::PathBuf;
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
        Err(e) => return ctx.failed(p, Method::StaticPtq, format!("cannot list libtorch's quantized engines: {e}")),
    };
    let Some(engine) = choose_engine(&engines) else {
        return ctx.unsupported(
            p,
            Method::StaticPtq,
            format!("this libtorch has no quantized CPU engine (it reports: {engines:?})"),
        );
    };
    if let Err(e) = shim::set_qengine(&engine) {
        return ctx.failed(p, Method::StaticPtq, format!("cannot select quantized engine {engine}: {e}"));
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
            return ctx.failed(p, Method::StaticPtq, format!("cannot create state folder {}: {e}", dir.display()));
        }
    }
    let started = Instant::now();
    let outcome = shim::quantize_static(&ctx.opts.model, &artefact, &engine, &samples.calibration);
    let seconds = started.elapsed().as_secs_f64();
    let mut warnings = Vec::new();
    if let Err((e, w)) = outcome.as_ref() {
        let mut result = ctx.failed(
            p,
            Method::StaticPtq,
            format!("static quantization failed: {}", model::clean_torch_error(e)),
        );
        result.notes.extend(w.iter().map(|w| format!("libtorch warned: {w}")));
        result.engine = Some(engine);
        return result;
    }
    if let Ok(o) = outcome {
        warnings = o.warnings;
    }

    let quantized = match CModule::load(&artefact) {
        Ok(mut m) => {
            let _ = m.f_set_eval();
            m
        }
        Err(e) => {
            return ctx.failed(
                p,
                Method::StaticPtq,
                format!("the quantized model {} does not load: {}", artefact.display(), model::clean_torch_error(&e.to_string())),
            )
        }
    };

    let mut result = ctx.time_module(p, Method::StaticPtq, &quantized, ctx.inputs);
    result.engine = Some(engine);
    result.quantization_seconds = Some(seconds);
    result.quantized_model = Some(artefact.display().to_string());
    result.calibration = Some(CalibrationFacts {
        source: samples.source.clone(),
        samples: samples.calibration.len(),
        held_out: samples.held_out.len(),
        note: samples.notes.join("; "),
    });
    result.notes.extend(warnings.iter().map(|w| format!("libtorch warned: {w}")));
    if result.latency_ms.is_some() {
        result.accuracy = Some(accuracy_on(ctx, &quantized, &samples));
    }
    result
}

/// Accuracy against FP32 on the held-out samples, or on the timing inputs
/// (which calibration never saw) when none were held out.
fn accuracy_on(ctx: &Context, quantized: &CModule, samples: &SampleSet) -> precisiond::accuracy::Accuracy {
    let eval: Vec<Vec<Tensor>> = if samples.held_out.is_empty() {
        vec![ctx.inputs.iter().map(Tensor::shallow_clone).collect()]
    } else {
        samples.held_out.iter().map(|s| s.iter().map(Tensor::shallow_clone).collect()).collect()
    };
    let mut reference: Vec<Vec<Tensor>> = Vec::new();
    let mut outputs: Vec<Vec<Tensor>> = Vec::new();
    for inputs in &eval {
        match (model::forward(ctx.fp32_module, inputs), model::forward(quantized, inputs)) {
            (Ok(r), Ok(o)) => {
                reference.push(model::output_tensors(&r));
                outputs.push(model::output_tensors(&o));
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = precisiond::accuracy::Accuracy::default();
                acc.worst.why_absent.insert("cosine".into(), format!("forward() failed on a held-out sample: {e}"));
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
                let parts: Vec<Tensor> = runs.iter().filter_map(|r| r.get(i).map(Tensor::shallow_clone)).collect();
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
    let name = precisiond::facts::file_name(&ctx.opts.model);
    let hash = precisiond::facts::hex_sha256(ctx.bytes);
    state.join("quantized").join(format!("{name}.{}.int8.pt", &hash[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_follows_the_architecture_and_what_libtorch_has() {
        let all: Vec<String> = ["qnnpack", "onednn", "x86", "fbgemm"].map(String::from).to_vec();
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
