//! The quantizing child process: `precisiond-worker quantize JOB.toml`
//! runs libtorch's static or dynamic quantization passes on one model and
//! saves the result. The model comes on its stdin, not by path: the worker hands over
//! the very bytes it read, hashed and timed, and the child refuses bytes
//! whose sha256 is not the job's, so the artefact saved under that hash is
//! the quantization of what was timed even if the file was swapped since. libtorch's passes can crash on a model (InsertObservers
//! segfaults on nn.TransformerEncoderLayer's scripted fast path, for one),
//! so they run in a process of their own: a crash there fails the int8
//! result (`crate::method::static_ptq`), not the whole report.

use crate::{calibration, model, shim};
use precisiond_core::child::{self, Ended, Limits};
use precisiond_core::fsutil::hex_sha256;
use precisiond_core::settings::{CalibrationSettings, InputSpec};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Seed of synthetic calibration batches: different from the timing
/// inputs', so accuracy is measured on inputs calibration never saw.
pub const CALIBRATION_SEED: i64 = 7_000;

/// Longest the passes may take; the worker's own time limit still applies.
/// They take seconds on torchvision's CNNs: this only ends a hang.
const QUANTIZE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which of libtorch's graph-mode quantizations the process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantMode {
    /// Weights and activations int8, activation ranges calibrated
    /// (`crate::method::static_ptq`).
    #[default]
    Static,
    /// Weights int8, activations quantized at run time; no calibration
    /// (`crate::method::dynamic_ptq`).
    Dynamic,
}

/// What the quantizing process is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub struct QuantizeJob {
    #[serde(default)]
    pub mode: QuantMode,
    /// sha256 (hex) of the model bytes the child gets on its stdin.
    pub model_sha256: String,
    #[serde(with = "precisiond_core::path_bytes")]
    pub out: PathBuf,
    pub engine: String,
    pub threads: usize,
    pub inputs: Vec<InputSpec>,
    pub calibration: Option<CalibrationSettings>,
    /// The calibration folder, resolved (and checked) by the worker.
    #[serde(default, with = "precisiond_core::path_bytes::option")]
    pub calibration_dir: Option<PathBuf>,
    /// The operator libraries the worker loaded for this model, loaded
    /// again here before the passes read it.
    #[serde(default, with = "precisiond_core::path_bytes::vec")]
    pub op_libraries: Vec<PathBuf>,
}

/// What the quantizing process reports on stdout, as TOML.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct QuantizeDone {
    pub seconds: f64,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Methods that took a module as an argument: the model was quantized
    /// from its forward inlined (`shim::QuantizeOutcome::inlined_methods`).
    #[serde(default)]
    pub inlined_methods: usize,
    /// The quantized forward's node kinds and counts.
    #[serde(default)]
    pub kinds: shim::OpKinds,
}

impl QuantizeDone {
    /// The note a result gets where the model was quantized from its
    /// forward inlined.
    pub fn inlined_note(&self) -> Option<String> {
        (self.inlined_methods > 0).then(|| {
            format!(
                "quantized from the forward graph inlined: {} traced method(s) take a module as \
                 an argument (a module instance shared by several parents, such as \
                 ultralytics' Conv.default_act), which libtorch's quantization passes refuse",
                self.inlined_methods
            )
        })
    }
}

/// Runs `job` on the model file's `bytes` (those `job.model_sha256` hashes)
/// in a child process. Err: the process could not run or crashed; a
/// failure of the passes themselves is `QuantizeDone::error`.
///
/// Call it from the worker's main thread: the child's PR_SET_PDEATHSIG
/// fires when the thread that forked it ends, not the process, so a child
/// forked from a short-lived thread would be killed early.
pub fn run_child(job: &QuantizeJob, bytes: &[u8]) -> Result<QuantizeDone, QuantizeError> {
    let job_file = precisiond_core::state_files::quantize_job(&job.out);
    let text = toml::to_string(job).map_err(QuantizeError::Describe)?;
    precisiond_core::fsutil::write_atomic(&job_file, text.as_bytes()).map_err(|error| {
        QuantizeError::WriteJob {
            file: job_file.clone(),
            error,
        }
    })?;
    let exe = std::env::current_exe().map_err(QuantizeError::OwnPath)?;
    let stdin = private_copy(bytes).map_err(QuantizeError::HandOver)?;
    let stderr = tempfile::tempfile().map_err(QuantizeError::TempFile)?;
    let mut stdout = String::new();
    let ended = child::run(
        child::own_binary(&exe)
            .arg("quantize")
            .arg(&job_file)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().map_err(QuantizeError::TempFile)?),
        Limits {
            timeout: Some(QUANTIZE_TIMEOUT),
            stop: None,
        },
        |line| {
            stdout.push_str(line);
            stdout.push('\n');
        },
    )
    .map_err(QuantizeError::Start);
    let _ = std::fs::remove_file(&job_file);
    let ended = ended?;
    let stderr = read_all(stderr);
    if !stderr.trim().is_empty() {
        log::debug!("quantizing process stderr: {stderr}");
    }
    match ended {
        Ended::Signaled(signal) => return Err(QuantizeError::Crashed { signal }),
        Ended::TimedOut(limit) => return Err(QuantizeError::TimedOut(limit)),
        _ => {}
    }
    toml::from_str(&stdout).map_err(|error| QuantizeError::NoResult {
        ended,
        error: Box::new(error),
        stderr: stderr.trim().to_owned(),
    })
}

/// Why the quantizing process gave no result. (A failure of the passes
/// themselves is a result: [`QuantizeDone::error`].)
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("cannot describe the quantization job: {0}")]
    Describe(toml::ser::Error),
    #[error("cannot write {}: {error}", file.display())]
    WriteJob {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot find the worker's own path: {0}")]
    OwnPath(std::io::Error),
    #[error("cannot hand the model to the quantizing process: {0}")]
    HandOver(std::io::Error),
    #[error("cannot create a temporary file: {0}")]
    TempFile(std::io::Error),
    #[error("cannot start the quantizing process: {0}")]
    Start(std::io::Error),
    /// The passes crashed the process (they can, on some models).
    #[error(
        "libtorch's quantization passes crashed on this model (signal {signal}, {}); the other \
         precisions are unaffected",
        child::signal_name(*signal)
    )]
    Crashed { signal: i32 },
    #[error(
        "libtorch's quantization passes ran past {} s and were killed",
        .0.as_secs()
    )]
    TimedOut(Duration),
    #[error("the quantizing process ended with {ended} without a result ({error}): {stderr}")]
    NoResult {
        ended: Ended,
        error: Box<toml::de::Error>,
        stderr: String,
    },
}

/// The model bytes in an unlinked temporary file, rewound: the child's
/// stdin. A file rather than a pipe, so no thread has to feed it while the
/// worker waits, and nobody else can open it.
fn private_copy(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    let mut file = tempfile::tempfile()?;
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file)
}

fn read_all(mut file: std::fs::File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text
}

/// Why the quantizing process could not run the passes; sent to the worker
/// as the result's error.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("cannot read {}: {error}", file.display())]
    ReadJob {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("bad job file {}: {error}", file.display())]
    BadJob {
        file: PathBuf,
        error: toml::de::Error,
    },
    #[error("cannot read the model from stdin: {0}")]
    Stdin(std::io::Error),
    // The spaces inside are the message's since it was written.
    #[error(
        "the model on stdin ({bytes} bytes, sha256 {sha256}) is not the one the job names                  (sha256 {expected}); the quantizing process takes the model's bytes on stdin from the                  worker, it is not meant to be run by hand"
    )]
    OtherModel {
        bytes: usize,
        sha256: String,
        expected: String,
    },
    #[error(transparent)]
    Calibration(#[from] calibration::CalibrationError),
    #[error(transparent)]
    OpLibrary(#[from] crate::libs::OpLibraryError),
}

/// The quantizing process: `precisiond-worker quantize JOB.toml`, with the
/// model's bytes on stdin.
pub fn quantize_main(job_file: &Path) -> QuantizeDone {
    let run = || -> Result<QuantizeDone, JobError> {
        let text = std::fs::read_to_string(job_file).map_err(|error| JobError::ReadJob {
            file: job_file.to_path_buf(),
            error,
        })?;
        let job: QuantizeJob = toml::from_str(&text).map_err(|error| JobError::BadJob {
            file: job_file.to_path_buf(),
            error,
        })?;
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(JobError::Stdin)?;
        let sha256 = hex_sha256(&bytes);
        if sha256 != job.model_sha256 {
            return Err(JobError::OtherModel {
                bytes: bytes.len(),
                sha256,
                expected: job.model_sha256,
            });
        }
        tch::set_num_threads(job.threads as i32);
        crate::libs::load_inherited(&job.op_libraries)?;
        let samples = match (job.mode, &job.calibration, &job.calibration_dir) {
            (QuantMode::Dynamic, _, _) => None,
            (QuantMode::Static, Some(cal), Some(dir)) => {
                Some(calibration::from_folder(cal, dir, &job.inputs)?)
            }
            (QuantMode::Static, _, _) => {
                Some(calibration::synthetic(&job.inputs, CALIBRATION_SEED))
            }
        };
        let started = Instant::now();
        // Saved under a temporary name and renamed: a killed process never
        // leaves a half-written model where the report points.
        let partial = precisiond_core::state_files::partial_quantized(&job.out);
        let passes = match &samples {
            Some(samples) => {
                shim::quantize_static(&bytes, &partial, &job.engine, &samples.calibration)
            }
            None => shim::quantize_dynamic(&bytes, &partial, &job.engine),
        };
        let outcome = passes
            .map_err(|(e, warnings)| (model::clean_torch_error(e), warnings))
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
                inlined_methods: o.inlined_methods,
                kinds: o.kinds,
            },
            Err((error, warnings)) => QuantizeDone {
                seconds,
                warnings,
                error: Some(error),
                ..QuantizeDone::default()
            },
        })
    };
    run().unwrap_or_else(|e| QuantizeDone {
        error: Some(e.to_string()),
        ..QuantizeDone::default()
    })
}
