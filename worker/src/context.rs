//! What every step of a job needs to know: what holds for the whole job
//! (options, settings, hardware, inputs: one [`Job`]), the model file being
//! measured with its FP32 reference (one [`Model`]), and the device being
//! measured (one [`Context`] per model and device).

use crate::family::Family;
use crate::forward::Forward;
use precisiond_core::accuracy::AccuracyThresholds;
use precisiond_core::bench::BenchConfig;
use precisiond_core::devices::Device;
use precisiond_core::hardware::Hardware;
use precisiond_core::job::JobSpec;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use precisiond_core::settings::{InputSpec, ModelSettings, SettingsDir};
use precisiond_core::tensorrt::Trtexec;
use std::cell::OnceCell;
use std::path::PathBuf;
use tch::Tensor;

/// One job's facts, fixed once its settings are read, the hardware
/// detected and the inputs known: the same for every model file the job
/// measures (the one asked for, and a TorchScript file its settings link).
pub struct Job<'a> {
    /// The job as the supervisor (or the command line) gave it.
    pub opts: &'a JobSpec,
    pub settings: ModelSettings,
    pub settings_dir: SettingsDir,
    pub hardware: Hardware,
    /// The options' budget, with the settings file's `max_seconds`.
    pub bench: BenchConfig,
    /// The accuracy verdict's thresholds for this model.
    pub accuracy: AccuracyThresholds,
    pub specs: Vec<InputSpec>,
    /// Made from `specs` once, on the CPU: every model, device and
    /// precision of the job runs on these.
    pub inputs: Vec<Tensor>,
    /// trtexec, looked for once, when a CUDA device first needs it.
    pub trtexec: OnceCell<Result<Trtexec, precisiond_core::tensorrt::TrtexecError>>,
}

/// The kind of model a job measures, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    TorchScript,
    /// A TorchScript model that calls `quantized::` operators.
    Prequantized,
    /// An AOTInductor family: one package per precision.
    AotiFamily,
}

/// One model file of a job, loaded, with its FP32 outputs on the job's
/// inputs, which every device and precision of it is compared with.
pub struct Model {
    pub path: PathBuf,
    /// The file's bytes (loaded again for every cast copy).
    pub bytes: Vec<u8>,
    /// Their sha256, as the report gives it: artefacts are named after it.
    pub sha256: String,
    /// Where its artefacts go (quantized models, engines, package copies):
    /// `--state-dir`, else `.precisiond/` beside it.
    pub state_dir: PathBuf,
    pub kind: ModelKind,
    /// The model as loaded in FP32, on the CPU.
    pub module: Box<dyn Forward>,
    /// `module`'s outputs on the job's inputs.
    pub reference: Vec<Tensor>,
    /// The family's packages, for an AOTInductor model.
    pub family: Option<Family>,
}

/// One device of a job, for one of its models.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub job: &'a Job<'a>,
    pub model: &'a Model,
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
        PrecisionResult::not_measured(self.device, precision, status, method, reason)
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
