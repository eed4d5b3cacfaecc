//! Running trtexec: building (or taking from the cache) the engine for
//! one precision, timing it, and turning the trace into a report result.
//! `precisiond_core::tensorrt` decides and parses (plan, command lines, engine
//! cache keys, the `--exportTimes` trace); this starts the builds and
//! timing runs and writes the engine cache.

use precisiond_core::accuracy::Accuracy;
use precisiond_core::bench::{self, LatencyStats, StopReason};
use precisiond_core::child::{run_logged, RunLoggedError};
use precisiond_core::fsutil::{ensure_state_subdir, hex_sha256, write_atomic};
use precisiond_core::precision::Precision;
use precisiond_core::protocol::Phase;
use precisiond_core::report::{CalibrationFacts, Method, PrecisionResult, Status};
use precisiond_core::state_files;
use precisiond_core::tensorrt::{
    build_args, engine_facts_path, onnx_has_qdq, parse_export_times, plan, samples_ms, timing_args,
    Calibration, EngineFacts, EngineKey, Plan, Trtexec,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the latency of a TensorRT result is measured, for the report.
pub const TIMING: &str = "trtexec --exportTimes: GPU compute time of each inference (computeMs, \
     CUDA events around the engine's enqueue), inputs and outputs kept on the device";

/// One TensorRT measurement.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub trtexec: &'a Trtexec,
    pub onnx: &'a Path,
    pub precision: Precision,
    /// CUDA device index (trtexec's `--device`).
    pub device_index: usize,
    /// The GPU's name and compute capability, for the engine cache key.
    pub gpu: String,
    /// The state folder; engines go to its `tensorrt/`.
    pub state_dir: &'a Path,
    pub calibration_cache: Option<&'a Path>,
    /// The settings' calibration folder, when given (see [`measure`]).
    pub calibration_samples: Option<&'a Path>,
    /// Time budget for the timing run, warm-up included, in seconds.
    pub max_seconds: f64,
    /// Inputs per inference (the batch dimension), for the throughput.
    pub batch: i64,
    /// Longest an engine build may take.
    pub build_timeout: Duration,
}

/// Builds (or takes from the cache) the engine for `req` and times it.
/// Never panics: every problem is a `failed` or `unsupported` result with
/// the reason.
pub fn measure(req: &Request) -> PrecisionResult {
    let device = precisiond_core::devices::Device::Cuda(req.device_index);
    let p = req.precision;
    let mut result =
        PrecisionResult::not_measured(device, p, Status::Ok, Method::Tensorrt, String::new());
    result.tensorrt_version = Some(req.trtexec.version.to_string());
    result.onnx = Some(req.onnx.display().to_string());
    let fail = |mut r: PrecisionResult, status: Status, reason: String| {
        r.status = status;
        r.reason = reason;
        r
    };

    let onnx_bytes = match std::fs::read(req.onnx) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("cannot read {}: {e}", req.onnx.display()),
            )
        }
    };
    let qdq = onnx_has_qdq(&onnx_bytes);
    let calibration_sha = match req.calibration_cache.map(std::fs::read) {
        Some(Ok(bytes)) => Some(hex_sha256(&bytes)),
        Some(Err(e)) => {
            let cache = req.calibration_cache.unwrap_or(Path::new("")).display();
            return fail(
                result,
                Status::Failed,
                format!("cannot read the TensorRT calibration cache {cache}: {e}"),
            );
        }
        None => None,
    };
    let plan = match plan(req.trtexec.version, p, qdq, req.calibration_cache) {
        Ok(plan) => plan,
        Err(why) => return fail(result, Status::Unsupported, why.to_string()),
    };
    let onnx_sha = hex_sha256(&onnx_bytes);
    drop(onnx_bytes);
    let key = EngineKey {
        onnx_sha256: &onnx_sha,
        version: req.trtexec.version,
        flags: &plan.flags,
        calibration_sha256: calibration_sha.as_deref(),
        gpu: &req.gpu,
    };
    let dir = match ensure_state_subdir(req.state_dir, state_files::TENSORRT_DIR) {
        Ok(dir) => dir,
        Err(e) => return fail(result, Status::Failed, e.to_string()),
    };
    let stem = req
        .onnx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let engine = key.engine_path(&dir, &stem, p);
    result.engine_file = Some(engine.display().to_string());

    // Build, unless an engine with the same key is already there.
    let facts_path = engine_facts_path(&engine);
    let cached = engine
        .is_file()
        .then(|| std::fs::read_to_string(&facts_path).ok())
        .flatten()
        .and_then(|t| toml::from_str::<EngineFacts>(&t).ok());
    match cached {
        Some(facts) => {
            result.engine_build_seconds = Some(facts.build_seconds);
            result.engine_cached = Some(true);
        }
        None => match build_engine(req, &plan, &engine) {
            Ok(seconds) => {
                result.engine_build_seconds = Some(seconds);
                result.engine_cached = Some(false);
                let facts = EngineFacts {
                    tensorrt: req.trtexec.version.to_string(),
                    flags: plan
                        .flags
                        .iter()
                        .map(|f| f.to_string_lossy().into_owned())
                        .collect(),
                    build_seconds: seconds,
                    built: precisiond_core::report::now().to_string(),
                };
                let text = toml::to_string(&facts).expect("engine facts serialise");
                if let Err(e) = write_atomic(&facts_path, text.as_bytes()) {
                    log::warn!("cannot write {}: {e}", facts_path.display());
                }
            }
            Err(why) => return fail(result, Status::Failed, why.to_string()),
        },
    }

    // Time it.
    let budget = req.max_seconds.max(1.0);
    let warmup_ms = (budget * 0.25 * 1e3).round().clamp(200.0, 10_000.0) as u64;
    let duration_s = ((budget - warmup_ms as f64 / 1e3).ceil() as u64).max(1);
    let times = match tempfile::Builder::new()
        .prefix(state_files::TIMES_PREFIX)
        .suffix(state_files::TIMES_SUFFIX)
        .tempfile_in(&dir)
    {
        Ok(t) => t.into_temp_path(),
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        }
    };
    let args = timing_args(
        req.trtexec.version,
        &engine,
        &times,
        req.device_index,
        warmup_ms,
        duration_s,
    );
    let timeout = Duration::from_secs(duration_s + warmup_ms / 1000 + 120);
    let log_path = engine.with_extension("run.log");
    let run = match run_logged(&req.trtexec.path, &args, timeout, Some(&log_path)) {
        Ok(run) => run,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("trtexec could not time the engine: {e}"),
            )
        }
    };
    if !run.success {
        return fail(
            result,
            Status::Failed,
            format!(
                "trtexec failed to run the engine ({}): {} (full log: {})",
                run.status,
                error_lines(&run.text),
                log_path.display()
            ),
        );
    }
    let text = match std::fs::read_to_string(&times) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!(
                    "trtexec wrote no --exportTimes file ({e}); log: {}",
                    log_path.display()
                ),
            )
        }
    };
    let samples = match parse_export_times(&text)
        .and_then(|e| samples_ms(&e, req.trtexec.version, warmup_ms as f64))
    {
        Ok(s) => s,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("trtexec's --exportTimes file is unusable: {e}"),
            )
        }
    };
    let stats = LatencyStats::from_samples(&samples).expect("samples_ms returns at least one");
    result.throughput_per_s = Some(req.batch.max(1) as f64 * 1e3 / stats.median);
    result.stop_reason = Some(StopReason::TimeBudget);
    result.median_rel_ci = bench::median_relative_ci(&samples);
    result.latency_ms = Some(stats);
    result.timing = Some(TIMING.to_owned());
    result.engine = Some(format!("tensorrt {}", req.trtexec.version));
    if p == Precision::Int8 {
        describe_calibration(
            &mut result,
            plan.calibration.as_ref(),
            req.calibration_samples,
        );
        result
            .notes
            .push("trtexec --int8: layers TensorRT cannot run in INT8 run in FP32".into());
    }
    result.accuracy = Some(Accuracy::absent(
        precisiond_core::accuracy::Absence::NotCompared,
        "trtexec times the engine on its own random inputs and precisiond does not read \
         TensorRT's outputs: no comparison with FP32",
    ));
    result
}

/// The calibration facts and notes of an INT8 result: where its ranges
/// came from, and a loud note when they are placeholders.
fn describe_calibration(
    result: &mut PrecisionResult,
    calibration: Option<&Calibration>,
    samples: Option<&Path>,
) {
    let (source, note) = match calibration {
        Some(Calibration::ExplicitQdq) => (
            "explicit: QuantizeLinear/DequantizeLinear scales in the ONNX file".to_owned(),
            String::new(),
        ),
        Some(Calibration::Cache(path)) => (
            format!("TensorRT calibration cache {}", path.display()),
            String::new(),
        ),
        Some(Calibration::Placeholder) | None => {
            result.notes.push(
                "PLACEHOLDER RANGES: trtexec had no calibration (no calibration cache, no Q/DQ nodes in \
                 the ONNX file), so TensorRT used placeholder INT8 ranges: this timing is valid, the \
                 engine's accuracy is not; do not deploy it"
                    .into(),
            );
            let mut note =
                "no calibration: TensorRT placeholder ranges (timing valid, accuracy not)"
                    .to_owned();
            if let Some(dir) = samples {
                note.push_str(&format!(
                    "; the calibration samples in {} are used by the CPU int8 path only: trtexec cannot \
                     calibrate from them (that takes TensorRT's calibrator API); give a cache made from \
                     them (e.g. with polygraphy) as `tensorrt_calibration_cache` in the settings",
                    dir.display()
                ));
            }
            ("none (TensorRT placeholder ranges)".to_owned(), note)
        }
    };
    result.calibration = Some(CalibrationFacts {
        source,
        samples: 0,
        held_out: 0,
        note,
    });
}

/// Builds the engine into a temporary name and renames it into place, so a
/// killed build never leaves an engine the cache would take for complete.
fn build_engine(req: &Request, plan: &Plan, engine: &Path) -> Result<f64, BuildError> {
    let partial = state_files::partial_engine(engine);
    let args = build_args(
        req.trtexec.version,
        req.onnx,
        &partial,
        &plan.flags,
        req.device_index,
    );
    let log_path = engine.with_extension("build.log");
    let started = Instant::now();
    // A phase of its own for the supervisor: the build's limit replaces the
    // worker's while it runs.
    let phase = Phase {
        name: "engine-build".into(),
        limit: req.build_timeout,
    };
    let run = crate::supervisor::in_phase(&phase, || {
        run_logged(&req.trtexec.path, &args, req.build_timeout, Some(&log_path))
    });
    let seconds = started.elapsed().as_secs_f64();
    let run = run.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        BuildError::NotRun(e)
    })?;
    if !run.success || !partial.is_file() {
        let _ = std::fs::remove_file(&partial);
        return Err(BuildError::Failed {
            precision: plan.precision,
            status: run.status,
            errors: error_lines(&run.text),
            log: log_path,
        });
    }
    std::fs::rename(&partial, engine).map_err(BuildError::Rename)?;
    Ok(seconds)
}

/// Why there is no engine.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    /// trtexec did not run to its end (it could not start, or ran past
    /// the build's limit).
    #[error("trtexec could not build the engine: {0}")]
    NotRun(RunLoggedError),
    /// trtexec ran and failed: its error lines and where its log is.
    #[error(
        "trtexec failed to build the {precision} engine ({status}): {errors} (full log: {})",
        log.display()
    )]
    Failed {
        precision: Precision,
        status: String,
        errors: String,
        log: PathBuf,
    },
    #[error("cannot move the engine into place: {0}")]
    Rename(std::io::Error),
}

/// The lines of trtexec's output that say what went wrong: its `[E]` lines
/// (the last three), else its last lines.
pub fn error_lines(text: &str) -> String {
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[E]") || l.contains("Error") || l.contains("ERROR"))
        .map(str::trim)
        .collect();
    if errors.is_empty() {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        if tail.is_empty() {
            "it printed nothing".to_owned()
        } else {
            tail.join(" | ")
        }
    } else {
        errors[errors.len().saturating_sub(3)..].join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_prefer_trtexecs_error_lines() {
        let text = "[I] a\n[E] Error[4]: bad shape\n[I] b\n&&&& FAILED TensorRT.trtexec\n";
        assert_eq!(error_lines(text), "[E] Error[4]: bad shape");
        assert_eq!(error_lines("one\ntwo\n"), "one | two");
        assert_eq!(error_lines(""), "it printed nothing");
    }
}
