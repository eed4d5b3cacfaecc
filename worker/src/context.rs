//! What every step of a job needs to know: the job's inputs, options and
//! FP32 reference (one [`Job`]), and the device being measured (one
//! [`Context`] per device).

use crate::forward::Forward;
use precisiond_core::bench::BenchConfig;
use precisiond_core::devices::Device;
use precisiond_core::hardware::Hardware;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use precisiond_core::settings::{InputSpec, ModelSettings, SettingsDir};
use precisiond_core::tensorrt::Trtexec;
use std::cell::OnceCell;
use std::path::PathBuf;
use tch::Tensor;

/// How the worker was asked to run one job.
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
    /// None: the settings file's list, else "auto".
    pub devices: Option<Vec<precisiond_core::devices::DeviceRequest>>,
    /// TensorRT's trtexec; None: PATH, then /usr/src/tensorrt/bin.
    pub trtexec: Option<PathBuf>,
    /// Started by the daemon: refuse a model or settings file that is a
    /// symbolic link, and keep the paths the settings name inside the drop
    /// folder.
    pub untrusted_folder: bool,
    /// Limit of one engine build, a phase the supervisor times on its own.
    pub build_timeout: std::time::Duration,
    /// Profile each result operator by operator after timing it.
    pub profile: bool,
    /// Write the report's chart beside it.
    pub chart: bool,
    /// The accuracy verdict's thresholds from the command line (the
    /// settings file's `[accuracy]` overrides them in [`Job::accuracy`]).
    pub accuracy: precisiond_core::accuracy::AccuracyThresholds,
    /// When a timing is contended or throttled.
    pub limits: precisiond_core::conditions::Limits,
    /// The daemon's wait for a quiet machine ran out: others' share then.
    pub started_busy: Option<f64>,
}

impl JobOptions {
    /// The state folder: `--state-dir`, else `.precisiond/` beside the model.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| precisiond_core::fsutil::state_dir_beside(&self.model))
    }
}

/// One job's facts, fixed once the model is loaded and its FP32 reference
/// computed.
pub struct Job<'a> {
    pub opts: &'a JobOptions,
    /// The model file's bytes (loaded again for every cast copy).
    pub bytes: &'a [u8],
    /// Their sha256, as the report gives it: artefacts are named after it.
    pub sha256: &'a str,
    pub hardware: &'a Hardware,
    pub bench: BenchConfig,
    /// FP32's outputs on the CPU: every device and precision is compared with them.
    pub reference: &'a [Tensor],
    /// The model as loaded, on the CPU.
    pub fp32_module: &'a dyn Forward,
    /// TorchScript, prequantized TorchScript (it runs only as INT8), or an
    /// AOTInductor family.
    pub kind: crate::plan::ModelKind,
    /// The family's packages, for an AOTInductor model.
    pub family: Option<&'a crate::family::Family>,
    pub settings: &'a ModelSettings,
    pub settings_dir: &'a SettingsDir,
    pub specs: &'a [InputSpec],
    /// The accuracy verdict's thresholds for this model.
    pub accuracy: precisiond_core::accuracy::AccuracyThresholds,
    /// trtexec, looked for once, when a CUDA device first needs it.
    pub trtexec: OnceCell<Result<Trtexec, precisiond_core::tensorrt::TrtexecError>>,
}

/// One device of a job.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub job: &'a Job<'a>,
    pub device: Device,
    /// The job's inputs, on `device`.
    pub inputs: &'a [Tensor],
    /// The energy sensor that covers `device`, looked for once per device,
    /// or why there is none.
    pub sensor: &'a Result<precisiond_core::energy::Sensor, precisiond_core::energy::EnergyError>,
}

impl Context<'_> {
    pub fn tch_device(&self) -> tch::Device {
        match self.device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        }
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self.device, Device::Cuda(_))
    }

    /// Inputs per forward() call: the first input's leading dimension.
    pub fn batch(&self) -> i64 {
        self.inputs
            .first()
            .and_then(|t| t.size().first().copied())
            .unwrap_or(1)
            .max(1)
    }

    /// A result on this device that holds no timing yet.
    pub fn result(
        &self,
        precision: Precision,
        status: Status,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        PrecisionResult::not_measured(&self.device.name(), precision, status, method, reason)
    }

    pub fn failed(&self, precision: Precision, method: Method, reason: String) -> PrecisionResult {
        self.result(precision, Status::Failed, method, reason)
    }

    pub fn unsupported(
        &self,
        precision: Precision,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        self.result(precision, Status::Unsupported, method, reason)
    }
}
