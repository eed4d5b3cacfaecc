//! INT8 on the CPU: static post-training quantization through libtorch's
//! graph-mode passes (see csrc/shim.cpp), calibrated on the user's samples
//! or on synthetic inputs. The passes run in a child process
//! (`crate::quantize`): they crash on some models, and a crash must fail
//! only this result. The quantized model is kept in the state folder, so a
//! user can deploy exactly what was timed.

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::calibration::{self, SampleSet};
use crate::context::Context;
use crate::model;
use crate::qengine::{self, NoEngine};
use crate::quantize::{self, QuantMode, QuantizeJob};
use precisiond_core::fsutil::ensure_state_subdir;
use precisiond_core::precision::Precision;
use precisiond_core::report::{CalibrationFacts, Method, PrecisionResult, Status};
use precisiond_core::state_files;
use std::path::Path;
use tch::{CModule, Tensor};

pub struct StaticPtq;

impl PrecisionMethod for StaticPtq {
    fn method(&self) -> Method {
        Method::StaticPtq
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let fail = |why: String| ctx.failed(precision, Method::StaticPtq, why);
        let engine = quantized_engine(ctx, precision, Method::StaticPtq)?;
        let with_engine = |mut r: PrecisionResult| {
            r.engine = Some(engine.clone());
            r
        };
        let job = ctx.job;
        let calibration_dir = match &job.settings.calibration {
            Some(cal) => Some(
                job.settings_dir
                    .resolve("calibration.dir", &cal.dir)
                    .map_err(|e| fail(e.to_string()))?,
            ),
            None => None,
        };
        let samples = match (&job.settings.calibration, &calibration_dir) {
            (Some(cal), Some(dir)) => {
                calibration::from_folder(cal, dir, &job.specs).map_err(|e| fail(e.to_string()))?
            }
            _ => calibration::synthetic(&job.specs, quantize::CALIBRATION_SEED),
        };

        // Checked (no link, ours) before anything is written there.
        let dir = ensure_state_subdir(&ctx.model.state_dir, state_files::QUANTIZED_DIR)
            .map_err(|e| fail(e.to_string()))?;
        // The quantizing process gets the very bytes that were hashed and
        // timed, and checks them against this hash, the artefact's name.
        let sha256 = ctx.model.sha256.clone();
        let artefact = state_files::quantized_model(&dir, model_name(ctx), &sha256);
        let done = quantize::run_child(
            &QuantizeJob {
                mode: QuantMode::Static,
                model_sha256: sha256,
                out: artefact.clone(),
                engine: engine.clone(),
                threads: job.opts.knobs.threads,
                inputs: job.specs.to_vec(),
                calibration: job.settings.calibration.clone(),
                calibration_dir,
                op_libraries: crate::libs::loaded_op_libraries(),
            },
            &ctx.model.bytes,
        )
        .map_err(|e| with_engine(fail(e.to_string())))?;
        let warnings: Vec<String> = done
            .warnings
            .iter()
            .map(|w| format!("libtorch warned: {w}"))
            .collect();
        if let Some(e) = &done.error {
            let mut result = with_engine(fail(format!("static quantization failed: {e}")));
            result.notes.extend(warnings);
            return Err(result);
        }

        let quantized = load_artefact(&artefact).map_err(fail)?;

        let mut result =
            with_engine(ctx.result(precision, Status::Ok, Method::StaticPtq, String::new()));
        result.quantization_seconds = Some(done.seconds);
        result.quantized_model = Some(report_relative(&artefact, &job.opts.report));
        result.calibration = Some(CalibrationFacts {
            source: samples.source.clone(),
            samples: samples.calibration.len(),
            held_out: samples.held_out.len(),
            note: samples.notes.join("; "),
        });
        result.notes.extend(done.inlined_note());
        result.notes.extend(warnings);
        Ok(Prepared::Module(Runnable {
            module: ModuleRef::Owned(Box::new(quantized)),
            inputs: ctx.inputs.iter().map(Tensor::shallow_clone).collect(),
            comparison: held_out(samples),
            result,
        }))
    }
}

/// Accuracy is measured on the held-out samples, or on the timing inputs
/// (which calibration never saw) when none were held out.
fn held_out(samples: SampleSet) -> Comparison {
    if samples.held_out.is_empty() {
        Comparison::Reference
    } else {
        Comparison::Samples(samples.held_out)
    }
}

/// libtorch's quantized engine for this machine, or the result that says
/// why INT8 cannot be made by `method`: unsupported where libtorch has no
/// engine for it, failed where choosing one failed.
#[allow(clippy::result_large_err)]
pub(super) fn quantized_engine(
    ctx: &Context<'_>,
    precision: Precision,
    method: Method,
) -> Result<String, PrecisionResult> {
    qengine::select().map_err(|e| match e {
        NoEngine::Missing(why) => ctx.unsupported(precision, method, why),
        NoEngine::Failed(why) => ctx.failed(precision, method, why),
    })
}

/// The model's file name (byte for byte: it need not be UTF-8), which its
/// quantized artefacts are named after.
pub(super) fn model_name<'a>(ctx: &Context<'a>) -> &'a std::ffi::OsStr {
    let model = &ctx.model.path;
    model.file_name().unwrap_or(model.as_os_str())
}

/// The quantized model saved at `artefact`, loaded for timing. Err: why it
/// cannot be (the artefact is then removed: none is kept that cannot be
/// deployed).
pub(super) fn load_artefact(artefact: &Path) -> Result<CModule, String> {
    // From its bytes: tch's load by path wants a UTF-8 path, and the
    // artefact is named after the model, whose name need not be.
    let saved = std::fs::read(artefact).map_err(|e| {
        format!(
            "cannot read the quantized model {}: {e}",
            artefact.display()
        )
    })?;
    match CModule::load_data(&mut std::io::Cursor::new(saved)) {
        Ok(mut m) => {
            let _ = m.f_set_eval();
            Ok(m)
        }
        Err(e) => {
            let _ = std::fs::remove_file(artefact);
            Err(format!(
                "libtorch's quantization passes produced a model that does not load: {}",
                model::clean_torch_error(e)
            ))
        }
    }
}

/// The artefact's path as the report shows it: relative to the report's
/// folder when it lies below it (the drop folder moves as a whole), else
/// absolute.
pub(super) fn report_relative(artefact: &Path, report: &Path) -> String {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let artefact = absolute(artefact);
    let base = report.parent().map(absolute).unwrap_or_default();
    match artefact.strip_prefix(&base) {
        Ok(rel) if !base.as_os_str().is_empty() => rel.display().to_string(),
        _ => artefact.display().to_string(),
    }
}
