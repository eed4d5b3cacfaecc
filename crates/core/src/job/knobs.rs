//! The measurement knobs: how a model is measured, defined once. The
//! daemon's config file has them as top-level keys (and `[accuracy]`),
//! `precisiond run` as flags of the same meaning, and the job spec carries
//! them to the worker; all three read this struct, and its bounds are
//! checked in one place ([`Knobs::validate`]).

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

/// A bounded setting, by the name a user gives it: the config file's key
/// ([`Knob::key`], inside [`Knob::table`] where it has one) or the
/// command line's flag ([`Knob::flag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    Precisions,
    Devices,
    MaxSeconds,
    TargetCiPercent,
    /// The worker's own limit (the daemon's `worker_timeout_seconds`,
    /// `precisiond run --timeout`): not a knob of [`Knobs`], since `run`
    /// has none by default, but bounded here with the others.
    WorkerTimeout,
    BuildTimeout,
    MinCosine,
    MinSqnrDb,
    MinTop1Agreement,
    BusyThreshold,
    ContendedCiPercent,
    ContendedP90Ratio,
    ClockDropPercent,
}

impl Knob {
    /// Every knob, for tests that must cover each.
    pub const ALL: [Knob; 13] = [
        Knob::Precisions,
        Knob::Devices,
        Knob::MaxSeconds,
        Knob::TargetCiPercent,
        Knob::WorkerTimeout,
        Knob::BuildTimeout,
        Knob::MinCosine,
        Knob::MinSqnrDb,
        Knob::MinTop1Agreement,
        Knob::BusyThreshold,
        Knob::ContendedCiPercent,
        Knob::ContendedP90Ratio,
        Knob::ClockDropPercent,
    ];

    /// The config file's key (inside [`Knob::table`] where there is one).
    pub const fn key(self) -> &'static str {
        match self {
            Knob::Precisions => "precisions",
            Knob::Devices => "devices",
            Knob::MaxSeconds => "max_seconds",
            Knob::TargetCiPercent => "target_ci_percent",
            Knob::WorkerTimeout => "worker_timeout_seconds",
            Knob::BuildTimeout => "build_timeout_seconds",
            Knob::MinCosine => "min_cosine",
            Knob::MinSqnrDb => "min_sqnr_db",
            Knob::MinTop1Agreement => "min_top1_agreement",
            Knob::BusyThreshold => "busy_threshold",
            Knob::ContendedCiPercent => "contended_ci_percent",
            Knob::ContendedP90Ratio => "contended_p90_ratio",
            Knob::ClockDropPercent => "clock_drop_percent",
        }
    }

    /// The config file's table that holds the key, if not the top level.
    pub const fn table(self) -> Option<&'static str> {
        match self {
            Knob::MinCosine | Knob::MinSqnrDb | Knob::MinTop1Agreement => Some("accuracy"),
            _ => None,
        }
    }

    /// `precisiond run`'s flag.
    pub const fn flag(self) -> &'static str {
        match self {
            Knob::Precisions => "--precisions",
            Knob::Devices => "--devices",
            Knob::MaxSeconds => "--max-seconds",
            Knob::TargetCiPercent => "--target-ci-percent",
            Knob::WorkerTimeout => "--timeout",
            Knob::BuildTimeout => "--build-timeout",
            Knob::MinCosine => "--min-cosine",
            Knob::MinSqnrDb => "--min-sqnr-db",
            Knob::MinTop1Agreement => "--min-top1-agreement",
            Knob::BusyThreshold => "--busy-threshold",
            Knob::ContendedCiPercent => "--contended-ci-percent",
            Knob::ContendedP90Ratio => "--contended-p90-ratio",
            Knob::ClockDropPercent => "--clock-drop-percent",
        }
    }

    /// Checks a numeric knob's value against its one bound. Where the
    /// config file and the command line used to disagree, the stricter
    /// bound is this one (a percentage of 0 and a limit of 0 seconds are
    /// refused on both).
    pub fn check(self, v: f64) -> Result<(), BadKnob> {
        match self.bound() {
            Some(bound) if !bound.admits(v) => Err(self.bad(bound.problem(v))),
            _ => Ok(()),
        }
    }

    pub fn bad(self, problem: Problem) -> BadKnob {
        BadKnob {
            knob: self,
            problem,
        }
    }

    fn bound(self) -> Option<Bound> {
        Some(match self {
            Knob::Precisions | Knob::Devices => return None,
            Knob::MaxSeconds | Knob::WorkerTimeout | Knob::BuildTimeout => Bound::PositiveSeconds,
            Knob::TargetCiPercent => Bound::PercentBelow100,
            Knob::ContendedCiPercent | Knob::ClockDropPercent => Bound::PercentUpTo100,
            Knob::MinCosine => Bound::Cosine,
            Knob::MinSqnrDb => Bound::FiniteDb,
            Knob::MinTop1Agreement => Bound::Share,
            Knob::BusyThreshold => Bound::CpuShare,
            Knob::ContendedP90Ratio => Bound::AtLeastOne,
        })
    }
}

/// The ranges knobs are kept to.
#[derive(Debug, Clone, Copy)]
enum Bound {
    PositiveSeconds,
    /// Above 0, below 100: a confidence target of 100% would stop at once.
    PercentBelow100,
    /// Above 0, at most 100.
    PercentUpTo100,
    Cosine,
    FiniteDb,
    Share,
    CpuShare,
    AtLeastOne,
}

impl Bound {
    fn admits(self, v: f64) -> bool {
        // Written so that NaN is refused by every bound.
        match self {
            Bound::PositiveSeconds => v.is_finite() && v > 0.0,
            Bound::PercentBelow100 => v > 0.0 && v < 100.0,
            Bound::PercentUpTo100 => v > 0.0 && v <= 100.0,
            Bound::Cosine => (-1.0..=1.0).contains(&v),
            Bound::FiniteDb => v.is_finite(),
            Bound::Share | Bound::CpuShare => (0.0..=1.0).contains(&v),
            Bound::AtLeastOne => v.is_finite() && v >= 1.0,
        }
    }

    fn problem(self, v: f64) -> Problem {
        match self {
            Bound::PositiveSeconds => Problem::NotPositiveSeconds(v),
            Bound::PercentBelow100 | Bound::PercentUpTo100 => Problem::NotPercent(v),
            Bound::Cosine => Problem::NotCosine(v),
            Bound::FiniteDb => Problem::NotFiniteDb(v),
            Bound::Share => Problem::NotShare(v),
            Bound::CpuShare => Problem::NotCpuShare(v),
            Bound::AtLeastOne => Problem::BelowOne(v),
        }
    }
}

/// What is wrong with a knob's value, in words that follow its name.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("must be a positive number of seconds, got {0}")]
    NotPositiveSeconds(f64),
    #[error("must be between 0 and 100, got {0}")]
    NotPercent(f64),
    #[error("must be between -1 and 1, got {0}")]
    NotCosine(f64),
    #[error("must be a finite number of dB, got {0}")]
    NotFiniteDb(f64),
    #[error("must be between 0 and 1, got {0}")]
    NotShare(f64),
    #[error("must be a share between 0 and 1 (0.25: a quarter of the CPUs), got {0}")]
    NotCpuShare(f64),
    #[error("must be at least 1, got {0}")]
    BelowOne(f64),
    #[error("is empty: list at least one of \"fp32\", \"fp16\", \"bf16\", \"int8\"")]
    NoPrecision,
    #[error("is empty: list \"auto\", \"cpu\" or \"cuda:N\"")]
    NoDevice,
}

/// A knob out of its bounds, named as a config key (its Display); a
/// settings file or config file error puts its table before it. On the
/// command line it is shown as [`BadFlag`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("`{}` {problem}", knob.key())]
pub struct BadKnob {
    pub knob: Knob,
    pub problem: Problem,
}

/// A knob out of its bounds, named by its flag: `--contended-ci-percent
/// must be between 0 and 100, got 0`.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{} {}", .0.knob.flag(), .0.problem)]
pub struct BadFlag(pub BadKnob);

impl From<BadKnob> for BadFlag {
    fn from(bad: BadKnob) -> BadFlag {
        BadFlag(bad)
    }
}
