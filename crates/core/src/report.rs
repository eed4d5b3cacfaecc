//! The report's data model: what a run found out about a model, as the
//! TOML report beside it holds it (written by `crate::output::toml`, shown
//! as a table by `crate::output::table`).
//!
//! The schema follows the report contract in docs/design.md; every key of
//! the contract is always present, more keys are added where useful.

use crate::accuracy::Accuracy;
use crate::bench::{LatencyStats, StopReason};
use crate::conditions::{Conditions, Quality};
use crate::devices::Device;
use crate::hardware::Hardware;
use crate::precision::Precision;
use crate::settings::InputSpec;
use crate::speedup::AcceleratedBy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::value::Datetime;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Unsupported,
    Failed,
    Skipped,
}

impl Status {
    /// The status as the report writes it ("ok", "unsupported", ...), for
    /// tables, summaries and charts.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unsupported => "unsupported",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Cast,
    /// FP16/BF16: the FP32 model run under libtorch's autocast, beside the
    /// cast.
    Autocast,
    StaticPtq,
    /// INT8 weights, activations quantized at run time (libtorch's
    /// graph-mode dynamic quantization): beside static PTQ where a model
    /// has linear layers.
    DynamicPtq,
    Prequantized,
    Tensorrt,
    /// An AOTInductor package compiled for the precision, run as it is.
    Aoti,
}

impl Method {
    /// As the report writes it: "cast", "autocast", "static-ptq", ...
    pub fn word(self) -> &'static str {
        match self {
            Method::Cast => "cast",
            Method::Autocast => "autocast",
            Method::StaticPtq => "static-ptq",
            Method::DynamicPtq => "dynamic-ptq",
            Method::Prequantized => "prequantized",
            Method::Tensorrt => "tensorrt",
            Method::Aoti => "aoti",
        }
    }
}

/// What kind of file the model is (`model.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A TorchScript archive (`.pt`, `.pth`, ...).
    Torchscript,
    /// An AOTInductor package (`.pt2`), the FP32 head of a family.
    Aoti,
}

impl Format {
    /// The format of the model at `path`, from its name as the worker
    /// decides it (`crate::aoti::is_pt2`).
    pub fn of(path: &Path) -> Format {
        if crate::aoti::is_pt2(path) {
            Format::Aoti
        } else {
            Format::Torchscript
        }
    }

    /// As the report writes it: "torchscript", "aoti".
    pub fn word(self) -> &'static str {
        match self {
            Format::Torchscript => "torchscript",
            Format::Aoti => "aoti",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Which runtime produced a result (`results.runtime`), where it is not
/// the model's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// The TorchScript model a settings file links to an AOTInductor
    /// family, measured beside it.
    Torchscript,
}

impl Runtime {
    /// As the report writes it: "torchscript".
    pub fn word(self) -> &'static str {
        match self {
            Runtime::Torchscript => "torchscript",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Where the inputs a model was timed on come from (`input_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputSource {
    /// The model's settings file (`[[inputs]]`).
    #[serde(rename = "settings")]
    Settings,
    /// Guessed from the TorchScript model.
    #[serde(rename = "inferred")]
    Inferred,
    /// An AOTInductor package's own metadata (scripts/precisiond-export.py).
    #[serde(rename = "package metadata")]
    PackageMetadata,
}

impl InputSource {
    /// As the report writes it: "settings", "inferred", "package metadata".
    pub fn word(self) -> &'static str {
        match self {
            InputSource::Settings => "settings",
            InputSource::Inferred => "inferred",
            InputSource::PackageMetadata => "package metadata",
        }
    }
}

impl std::fmt::Display for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Why a result's `speedup_vs_fp32` is absent although both timings were
/// taken (`results.speedup_withheld`): a ratio of two numbers that are not
/// the model's speed means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpeedupWithheld {
    /// FP32's timing on the device was contended or throttled.
    Fp32Unclean,
    /// This result's own timing was contended or throttled.
    Unclean,
}

/// A result's first timing, thrown away because it was contended: the
/// result holds the second (`results.retimed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retimed {
    /// The first timing's quality ("contended").
    pub quality: Quality,
    pub median_ms: f64,
    pub p90_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// "ok" when the model was loaded and measured, "failed" otherwise.
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on a failure precisiond tries again (the worker crashed, ran past
    /// its limit): which attempt in a row this report comes from. Absent on
    /// failures that would only repeat themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    pub model: ModelFacts,
    pub run: RunFacts,
    /// "settings" (from the settings file) or "inferred" (guessed from the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_source: Option<InputSource>,
    /// With `input_source = "inferred"`: what in the model each input of
    /// `inputs` was inferred from, in words, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs_inferred_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(default)]
    pub results: Vec<PrecisionResult>,
    /// An AOTInductor family measured beside its TorchScript model: both
    /// runtimes' medians per device and precision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_by_side: Vec<RuntimeComparison>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFacts {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_file: Option<String>,
    /// sha256 of the settings file, so a daemon sees when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_sha256: Option<String>,
    /// An AOTInductor family: the packages of the other precisions beside
    /// the FP32 one (`file`), as they were when measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantFacts>,
    /// The TorchScript model the settings file links to an AOTInductor
    /// family, measured beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torchscript: Option<LinkedFile>,
}

/// A file measured with the model, as it was when measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One (device, precision) measured by both runtimes: the AOTInductor
/// package and the TorchScript model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeComparison {
    pub device: Device,
    pub precision: Precision,
    pub aoti_median_ms: f64,
    pub torchscript_median_ms: f64,
    /// torchscript_median_ms / aoti_median_ms: above 1, the package is faster.
    pub aoti_speedup_vs_torchscript: f64,
}

/// A result's median in the report it replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousRun {
    pub median_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_ci: Option<[f64; 2]>,
    /// When that run finished.
    pub finished: Datetime,
    /// The model file that run measured (the same, or an older version).
    pub model_sha256: String,
}

/// Energy of one result, read from a sensor across its timed calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyFacts {
    /// "RAPL package-0+dram", "INA3221 VDD_IN", "NVML cuda0", ...
    pub sensor: String,
    /// The rails or domains the reading covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rails: Vec<String>,
    /// Millijoules per inference (per forward() call divided by the batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_mj_per_inference: Option<f64>,
    /// Mean power over the window, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_power_w: Option<f64>,
    /// Power over a short idle window just before, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    /// This precision's energy per inference over FP32's on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_vs_fp32: Option<f64>,
    /// Seconds the energy window lasted: the timed calls, extended with
    /// further calls when they were too short for the sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    /// forward() calls in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// Readings the figure rests on: 2 for a counter (start, end), the
    /// sample count for a sampled power sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Sampling rate of a sampled sensor, Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_hz: Option<f64>,
    /// Why there is no figure ("energy: not readable (permission)", "no
    /// energy sensor found ...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_read: Option<String>,
}

/// One package of an AOTInductor family, other than the FP32 head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantFacts {
    pub precision: Precision,
    /// Its file name (or its path as the settings file gives it).
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What an AOTInductor package was compiled for, from its metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackageFacts {
    /// The package's file.
    pub file: String,
    /// Inductor's `AOTI_CPU_ISA` ("AVX2", "AVX512 AVX512_VNNI", "ASIMD").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_isa: Option<String>,
    /// `AOTI_DEVICE_KEY`: "cpu" or "cuda".
    pub device: String,
    /// `AOTI_COMPUTE_CAPABILITY`, for a CUDA package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    /// Who made it (precisiond-export.py records itself and the versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFacts {
    pub started: Datetime,
    pub finished: Datetime,
    pub precisiond: String,
    pub libtorch: String,
    pub threads: usize,
    pub host: String,
    /// Time budget per precision and device, seconds.
    pub max_seconds: f64,
    /// Relative 95% confidence half-width of the median at which timing stops.
    pub target_rel_ci: f64,
    /// The emulator this ran under (see `crate::emulation`): timings are
    /// the emulator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<String>,
    /// The accuracy verdict's thresholds this run judged by (the config's
    /// or command line's, with the settings file's `[accuracy]` applied),
    /// so the daemon sees a report judged by other ones as stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<crate::accuracy::AccuracyThresholds>,
    /// Share of the CPUs others used when the daemon's wait for a quiet
    /// machine ran out and the job started anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_busy: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrecisionResult {
    pub device: Device,
    pub precision: Precision,
    pub status: Status,
    /// Why, whenever status is not ok; otherwise empty.
    pub reason: String,
    /// The hardware has arithmetic for this precision (not only conversion).
    pub native: bool,
    /// This precision is really faster for this model: decided by the
    /// model's speedup interval (`accelerated_by = "model"`), else by
    /// hardware detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerated: Option<bool>,
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_vs_fp32: Option<f64>,
    /// Why `speedup_vs_fp32` is absent though both timings exist: one of
    /// them was contended or throttled. Absent in reports written before
    /// it existed (their notes say it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_withheld: Option<SpeedupWithheld>,
    /// The first timing, when it was contended and the result was timed
    /// again inside the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retimed: Option<Retimed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_iterations: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// Relative half-width of the median's 95% confidence interval reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_rel_ci: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// "torchscript" on the results of the TorchScript model measured
    /// beside an AOTInductor family; absent on the model's own results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// The same result in the report this one replaced (the model measured
    /// again): its median and interval, for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousRun>,
    /// True when the median is above the previous run's 95% confidence
    /// interval; absent without a previous run or when either timing was
    /// contended or throttled (`crate::regression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<bool>,
    /// Energy per inference over the timed calls, where a sensor is
    /// readable; otherwise why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergyFacts>,
    /// The AOTInductor package timed (`method = "aoti"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantized_model: Option<String>,
    /// How the latency was taken, where it is not the host clock around
    /// each call (CUDA: device synchronised around each call; TensorRT:
    /// trtexec's per-inference GPU times).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<String>,
    /// Peak bytes libtorch's CUDA caching allocator handed out while this
    /// precision was prepared and timed (its weights, inputs, activations
    /// and outputs), on top of what was allocated when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_device_memory_bytes: Option<u64>,
    /// The same for the bytes the allocator reserved from the driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_device_reserved_bytes: Option<u64>,
    /// The worker's peak resident set size (VmHWM) while this precision
    /// was prepared and timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_host_rss_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorrt_version: Option<String>,
    /// The ONNX file TensorRT built its engine from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<String>,
    /// The TensorRT engine that was timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_file: Option<String>,
    /// Seconds trtexec took to build the engine (when it was built, or
    /// when the cached engine was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_build_seconds: Option<f64>,
    /// The engine came from the cache in the state folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_cached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<LatencyStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Accuracy>,
    /// Where the time went, operator by operator (`--profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<OperatorProfile>,
    /// Whether `accuracy` keeps to the thresholds (config `[accuracy]`,
    /// settings `[accuracy]`); absent where nothing was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_ok: Option<bool>,
    /// Which thresholds were broken, when `accuracy_ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_reason: Option<String>,
    /// The 95% confidence interval of `speedup_vs_fp32` (see
    /// `crate::speedup::ci`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_ci_vs_fp32: Option<[f64; 2]>,
    /// What decided `accelerated`: "model" (this model's speedup interval)
    /// or "probe" (hardware detection, when the model's timings had no
    /// interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerated_by: Option<AcceleratedBy>,
    /// Hardware detection's verdict (flags and the micro-probe), kept beside
    /// the model's; absent where no probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_accelerated: Option<bool>,
    /// Whether the timing is the model's speed: "clean", "contended"
    /// (others used the CPUs, or the timings spread) or "throttled" (the
    /// clock fell, a zone reached its trip point); `conditions.why` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// What else the machine did, and its clock and heat, over the timed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
}

/// The operators that took a result's time, from a few forward() calls
/// made after the timed ones (profiling slows calls down a little, so it
/// never runs while they are timed). Times are totals over those calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorProfile {
    /// How many forward() calls were profiled.
    pub forward_calls: usize,
    /// Their wall time, in milliseconds: the denominator of every `share`.
    pub wall_ms: f64,
    /// The operators with the most self time, most first (at most
    /// [`OperatorProfile::TOP`]).
    pub operators: Vec<OperatorTime>,
    /// INT8 only: the outermost operators that ran on floating-point
    /// tensors, outside the quantize_per_tensor ... dequantize spans, most
    /// time first. The converting operators themselves are not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_operators: Option<Vec<OperatorTime>>,
}

impl OperatorProfile {
    /// How many operators `operators` lists.
    pub const TOP: usize = 10;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorTime {
    /// libtorch's operator name, e.g. "aten::addmm", "quantized::linear".
    pub name: String,
    /// Calls over all profiled forward() calls.
    pub calls: u64,
    /// Time in the operator itself, less the operators it called.
    pub self_ms: f64,
    /// Time from the operator's start to its end, callees included.
    pub total_ms: f64,
    /// `self_ms` over the profile's `wall_ms` (for float operators,
    /// `total_ms` over it: they are outermost calls).
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFacts {
    /// "synthetic" or the folder the samples came from.
    pub source: String,
    pub samples: usize,
    /// Samples held out of calibration to measure accuracy on.
    pub held_out: usize,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl PrecisionResult {
    /// "fp16", or "fp16 (tensorrt)" for TensorRT's result beside libtorch's,
    /// "int8 (dynamic-ptq)" for dynamic PTQ's beside static PTQ's,
    /// "fp16 (autocast)" for autocast's beside the cast.
    pub fn precision_label(&self) -> String {
        if let Some(runtime) = &self.runtime {
            match self.method {
                Method::Autocast => format!("{} ({runtime}, autocast)", self.precision),
                _ => format!("{} ({runtime})", self.precision),
            }
        } else if self.method == Method::Tensorrt {
            format!("{} (tensorrt)", self.precision)
        } else if self.method == Method::DynamicPtq {
            format!("{} (dynamic-ptq)", self.precision)
        } else if self.method == Method::Autocast {
            format!("{} (autocast)", self.precision)
        } else {
            self.precision.to_string()
        }
    }

    /// A result with no measurement, for a precision that was not timed.
    pub fn not_measured(
        device: Device,
        precision: Precision,
        status: Status,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        PrecisionResult {
            device,
            precision,
            status,
            reason,
            native: false,
            accelerated: None,
            method,
            speedup_vs_fp32: None,
            speedup_withheld: None,
            retimed: None,
            throughput_per_s: None,
            warmup_iterations: None,
            stop_reason: None,
            median_rel_ci: None,
            notes: Vec::new(),
            engine: None,
            package: None,
            runtime: None,
            energy: None,
            previous: None,
            regression: None,
            quantization_seconds: None,
            quantized_model: None,
            timing: None,
            peak_device_memory_bytes: None,
            peak_device_reserved_bytes: None,
            peak_host_rss_bytes: None,
            tensorrt_version: None,
            onnx: None,
            engine_file: None,
            engine_build_seconds: None,
            engine_cached: None,
            calibration: None,
            latency_ms: None,
            accuracy: None,
            profile: None,
            accuracy_ok: None,
            accuracy_reason: None,
            speedup_ci_vs_fp32: None,
            accelerated_by: None,
            probe_accelerated: None,
            quality: None,
            conditions: None,
        }
    }
}

pub fn now() -> Datetime {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .parse()
        .expect("RFC 3339 timestamp parses as a TOML datetime")
}

/// This machine's host name, for the report.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Where a model's report goes by default: `resnet.pt` -> `resnet.pt.report.toml`.
pub fn default_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".report.toml");
    PathBuf::from(name)
}

/// Reads a report without following a symlink at its path.
pub fn load(path: &Path) -> Result<Report, String> {
    let mut text = String::new();
    crate::fsutil::open_regular(path)
        .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
        .map_err(|e| format!("cannot read report {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("report {} is not valid: {e}", path.display()))
}

/// A `failed` report written by the supervisor for a model whose worker
/// could not write one. Needs no libtorch.
pub fn failed_report(
    model: &Path,
    error: String,
    started: toml::value::Datetime,
    threads: usize,
) -> Report {
    // Streamed: a multi-gigabyte model must not pass through the
    // supervisor's memory.
    let (sha256, bytes) = std::fs::File::open(model)
        .and_then(crate::fsutil::sha256_of)
        .unwrap_or_else(|_| (String::new(), 0));
    failed_report_for(model, sha256, bytes, error, started, threads)
}

/// A `failed` report for a model with the given hash and size; the model
/// is not read (a file over the size limit is rejected unread). Its
/// `format` is the one the worker would have found: `aoti` for a `.pt2`.
pub fn failed_report_for(
    model: &Path,
    sha256: String,
    bytes: u64,
    error: String,
    started: toml::value::Datetime,
    threads: usize,
) -> Report {
    let mut report = skeleton(model, sha256, bytes, started, threads);
    report.status = Status::Failed;
    report.error = Some(error);
    report.run.finished = now();
    report
}

/// The report of a job on `model` before anything is known but the file:
/// status ok, no results. The worker starts its report from it and fills
/// it in as it measures; the supervisor's failed reports start from it too,
/// so both write the same keys.
pub fn skeleton(
    model: &Path,
    sha256: String,
    bytes: u64,
    started: toml::value::Datetime,
    threads: usize,
) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        status: Status::Ok,
        error: None,
        attempts: None,
        model: ModelFacts {
            file: crate::fsutil::file_name(model),
            sha256,
            bytes,
            format: Format::of(model),
            settings_file: None,
            settings_sha256: None,
            variants: Vec::new(),
            torchscript: None,
        },
        run: RunFacts {
            started,
            finished: started,
            precisiond: env!("CARGO_PKG_VERSION").into(),
            // The worker sets its own; the supervisor fills it in from the
            // worker's first line where a worker ran.
            libtorch: "unknown".into(),
            threads,
            host: host_name(),
            emulator: crate::emulation::emulator(),
            started_busy: None,
            max_seconds: 0.0,
            target_rel_ci: 0.0,
            accuracy: None,
        },
        input_source: None,
        inputs_inferred_from: Vec::new(),
        inputs: Vec::new(),
        notes: Vec::new(),
        hardware: None,
        results: Vec::new(),
        side_by_side: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `value` as the report writes it, and back.
    fn spelled<T>(value: T) -> String
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        #[derive(Serialize, serde::Deserialize)]
        struct Holder<T> {
            v: T,
        }
        let text = toml::to_string(&Holder { v: &value }).unwrap();
        let back: Holder<T> = toml::from_str(&text).unwrap();
        assert_eq!(back.v, value);
        text.trim()
            .strip_prefix("v = ")
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }

    #[test]
    fn report_words_keep_their_spellings() {
        for (f, word) in [(Format::Torchscript, "torchscript"), (Format::Aoti, "aoti")] {
            assert_eq!(spelled(f), word);
            assert_eq!(f.to_string(), word);
        }
        assert_eq!(spelled(Runtime::Torchscript), "torchscript");
        assert_eq!(Runtime::Torchscript.to_string(), "torchscript");
        for (s, word) in [
            (InputSource::Settings, "settings"),
            (InputSource::Inferred, "inferred"),
            (InputSource::PackageMetadata, "package metadata"),
        ] {
            assert_eq!(spelled(s), word);
            assert_eq!(s.to_string(), word);
        }
        for (w, word) in [
            (SpeedupWithheld::Fp32Unclean, "fp32-unclean"),
            (SpeedupWithheld::Unclean, "unclean"),
        ] {
            assert_eq!(spelled(w), word);
        }
        for (s, word) in [
            (Status::Ok, "ok"),
            (Status::Unsupported, "unsupported"),
            (Status::Failed, "failed"),
            (Status::Skipped, "skipped"),
        ] {
            assert_eq!(spelled(s), word);
            assert_eq!(s.word(), word);
        }
        for (m, word) in [
            (Method::Cast, "cast"),
            (Method::Autocast, "autocast"),
            (Method::StaticPtq, "static-ptq"),
            (Method::DynamicPtq, "dynamic-ptq"),
            (Method::Prequantized, "prequantized"),
            (Method::Tensorrt, "tensorrt"),
            (Method::Aoti, "aoti"),
        ] {
            assert_eq!(spelled(m), word);
            assert_eq!(m.word(), word);
        }
    }

    #[test]
    fn a_result_beside_the_planned_one_names_its_method_in_its_label() {
        let label = |method| {
            PrecisionResult::not_measured(
                Device::Cpu,
                Precision::Int8,
                Status::Ok,
                method,
                String::new(),
            )
            .precision_label()
        };
        assert_eq!(label(Method::StaticPtq), "int8");
        assert_eq!(label(Method::DynamicPtq), "int8 (dynamic-ptq)");
        assert_eq!(label(Method::Tensorrt), "int8 (tensorrt)");
    }

    #[test]
    fn the_failed_report_names_the_models_format() {
        let started = now();
        let failed = |name: &str| {
            failed_report_for(Path::new(name), String::new(), 0, "x".into(), started, 1)
                .model
                .format
        };
        assert_eq!(failed("/m/resnet.pt"), Format::Torchscript);
        assert_eq!(failed("/m/resnet.pt2"), Format::Aoti);
        assert_eq!(failed("/m/RESNET.PT2"), Format::Aoti);
        let text = toml::to_string(&failed_report_for(
            Path::new("/m/family.pt2"),
            String::new(),
            0,
            "x".into(),
            started,
            1,
        ))
        .unwrap();
        assert!(text.contains("format = \"aoti\""), "{text}");
    }

    #[test]
    fn new_result_fields_are_read_and_left_out_when_absent() {
        let mut r = PrecisionResult::not_measured(
            Device::Cuda(1),
            Precision::Fp16,
            Status::Ok,
            Method::Cast,
            String::new(),
        );
        let plain = toml::to_string(&r).unwrap();
        assert!(!plain.contains("speedup_withheld") && !plain.contains("retimed"));
        assert!(plain.contains("device = \"cuda:1\""), "{plain}");
        r.speedup_withheld = Some(SpeedupWithheld::Fp32Unclean);
        r.retimed = Some(Retimed {
            quality: Quality::Contended,
            median_ms: 2.5,
            p90_ms: 3.0,
        });
        r.runtime = Some(Runtime::Torchscript);
        let text = toml::to_string(&r).unwrap();
        assert!(
            text.contains("speedup_withheld = \"fp32-unclean\""),
            "{text}"
        );
        assert!(text.contains("runtime = \"torchscript\""), "{text}");
        assert!(
            text.contains("[retimed]\nquality = \"contended\""),
            "{text}"
        );
        let back: PrecisionResult = toml::from_str(&text).unwrap();
        assert_eq!(back.speedup_withheld, r.speedup_withheld);
        assert_eq!(back.retimed, r.retimed);
        assert_eq!(back.device, Device::Cuda(1));
        assert_eq!(back.precision_label(), "fp16 (torchscript)");
    }
}
