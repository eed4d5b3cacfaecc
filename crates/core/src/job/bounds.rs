//! The bounds of every knob, and the errors that name a knob by its config
//! key or by its flag. Apart from the knobs themselves (`knobs.rs`), so
//! that a type a knob holds (`AccuracyThresholds`) can check its own values
//! by these bounds without an import circle.

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
    /// `precisiond run --timeout`): not a knob of [`super::Knobs`], since `run`
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
