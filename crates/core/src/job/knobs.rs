//! The measurement knobs: how a model is measured, defined once. The
//! daemon's config file has them as top-level keys (and `[accuracy]`),
//! `precisiond run` as flags of the same meaning, and the job spec carries
//! them to the worker; all three read this struct, and its bounds are
//! checked in one place ([`Knobs::validate`]).

use super::bounds::{BadKnob, Knob, Problem};
use crate::accuracy::AccuracyThresholds;
use crate::bench::BenchConfig;
use crate::conditions::Limits;
use crate::devices::DeviceRequest;
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The default limit of one engine build: TensorRT builds of large models
/// on a Jetson take tens of minutes.
pub const DEFAULT_BUILD_TIMEOUT_SECONDS: f64 = 1800.0;

/// How a model is measured. The field names are the config file's keys.
/// Not `deny_unknown_fields`: the config file reads its other keys from the
/// same table (and checks for unknown ones itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Precisions measured for a model whose settings file names none.
    pub precisions: Vec<Precision>,
    /// CPU threads for every precision; 0 means all cores.
    pub threads: usize,
    /// Time budget per precision and device, warm-up included, in seconds
    /// (a settings file's `max_seconds` wins).
    pub max_seconds: f64,
    /// Timing of a precision stops once the median's 95% confidence interval
    /// is within this many percent of it.
    pub target_ci_percent: f64,
    /// An engine build (TensorRT) is a phase of its own, with this limit
    /// instead of the worker's.
    pub build_timeout_seconds: f64,
    /// Run the hardware micro-benchmark, once per boot and libtorch version
    /// (cached in the state folder); flags alone decide `native` otherwise.
    pub probe: bool,
    /// Devices measured for a model whose settings file names none: "auto"
    /// (the CPU and every CUDA device libtorch sees), "cpu", "cuda:0", ...
    pub devices: Vec<DeviceRequest>,
    /// TensorRT's trtexec [default: PATH, then /usr/src/tensorrt/bin].
    #[serde(
        default,
        with = "crate::path_bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub trtexec: Option<PathBuf>,
    /// Operator libraries (shared objects that register custom TorchScript
    /// operators, e.g. a C++ extension's) the worker loads before every
    /// model, in order, each by absolute path. torchvision's own is found
    /// without being named here (scripts/install-torchvision.sh). A
    /// settings file's `op_libraries` add to these.
    #[serde(default, with = "crate::path_bytes::vec")]
    pub op_libraries: Vec<PathBuf>,
    /// Profile each result operator by operator after timing it.
    pub profile: bool,
    /// Write the chart `NAME.pt.report.svg` beside each report.
    pub chart: bool,
    /// The `[accuracy]` table: the bounds of each result's accuracy verdict
    /// (a settings file's `[accuracy]` wins, threshold by threshold).
    pub accuracy: AccuracyThresholds,
    /// A result during which other processes used more than this share
    /// (0 to 1) of the CPUs is marked contended (the daemon also waits for
    /// less before it starts a job).
    pub busy_threshold: f64,
    /// A result whose median's 95% confidence interval stays wider than this
    /// many percent of it is marked contended.
    pub contended_ci_percent: f64,
    /// A result whose p90 is more than this many times its median is marked contended.
    pub contended_p90_ratio: f64,
    /// A result during which the CPU clock fell by more than this many
    /// percent is marked throttled.
    pub clock_drop_percent: f64,
}

impl Default for Knobs {
    fn default() -> Self {
        let bench = BenchConfig::default();
        let limits = Limits::default();
        Knobs {
            precisions: Precision::ALL.to_vec(),
            threads: 0,
            max_seconds: bench.max_seconds,
            target_ci_percent: bench.target_rel_ci * 100.0,
            build_timeout_seconds: DEFAULT_BUILD_TIMEOUT_SECONDS,
            probe: true,
            devices: crate::devices::default_requests(),
            trtexec: None,
            op_libraries: Vec::new(),
            profile: false,
            chart: true,
            accuracy: AccuracyThresholds::default(),
            busy_threshold: limits.busy_threshold,
            contended_ci_percent: limits.max_rel_ci * 100.0,
            contended_p90_ratio: limits.max_p90_ratio,
            clock_drop_percent: limits.max_clock_drop * 100.0,
        }
    }
}

impl Knobs {
    /// Out-of-range values, the first one found, named by its knob.
    pub fn validate(&self) -> Result<(), BadKnob> {
        Knob::MaxSeconds.check(self.max_seconds)?;
        Knob::TargetCiPercent.check(self.target_ci_percent)?;
        Knob::BuildTimeout.check(self.build_timeout_seconds)?;
        self.accuracy.validate()?;
        Knob::BusyThreshold.check(self.busy_threshold)?;
        Knob::ContendedCiPercent.check(self.contended_ci_percent)?;
        Knob::ContendedP90Ratio.check(self.contended_p90_ratio)?;
        Knob::ClockDropPercent.check(self.clock_drop_percent)?;
        if self.precisions.is_empty() {
            return Err(Knob::Precisions.bad(Problem::NoPrecision));
        }
        if self.devices.is_empty() {
            return Err(Knob::Devices.bad(Problem::NoDevice));
        }
        Ok(())
    }

    /// The threads a job really uses (0 means all cores).
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The timing budget and stopping rule.
    pub fn bench(&self) -> BenchConfig {
        BenchConfig {
            max_seconds: self.max_seconds,
            target_rel_ci: self.target_ci_percent / 100.0,
            ..BenchConfig::default()
        }
    }

    /// The thresholds a result's conditions are judged by.
    pub fn limits(&self) -> Limits {
        Limits {
            busy_threshold: self.busy_threshold,
            max_rel_ci: self.contended_ci_percent / 100.0,
            max_p90_ratio: self.contended_p90_ratio,
            max_clock_drop: self.clock_drop_percent / 100.0,
        }
    }

    /// The limit of one engine build.
    pub fn build_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.build_timeout_seconds)
    }
}
