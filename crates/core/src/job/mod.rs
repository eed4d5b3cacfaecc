//! The job a worker is given: one [`JobSpec`] holds everything a
//! measurement needs. [`JobSpec::build`] is the one place it is made, from
//! the [`Knobs`] (the daemon's config, or the defaults with `precisiond
//! run`'s flags applied) and what the starter of the job decides
//! ([`Given`]); it checks every bound once. The supervisor hands the spec
//! to the worker whole, as TOML on the worker's standard input
//! (`precisiond-worker run MODEL --job -`), so no setting is passed, or
//! forgotten, flag by flag.
//!
//! The model's settings file is read by the worker; how it combines with
//! the spec is [`JobSpec::with_settings`], which the daemon uses too to
//! tell whether a report is current.

pub mod bounds;
mod knobs;

pub use bounds::{BadFlag, BadKnob, Knob, Problem};
pub use knobs::{Knobs, DEFAULT_BUILD_TIMEOUT_SECONDS};

use crate::accuracy::AccuracyThresholds;
use crate::bench::BenchConfig;
use crate::devices::DeviceRequest;
use crate::precision::Precision;
use crate::settings::ModelSettings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One measurement job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The model: TorchScript, or the FP32 package of an AOTInductor family.
    #[serde(with = "crate::path_bytes")]
    pub model: PathBuf,
    /// Where the report is written.
    #[serde(with = "crate::path_bytes")]
    pub report: PathBuf,
    /// A settings file named for this job; None: `MODEL.toml` beside the
    /// model, when it exists.
    #[serde(
        default,
        with = "crate::path_bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub settings: Option<PathBuf>,
    /// Folder for artefacts (quantized models, engines, the probe's cache).
    #[serde(with = "crate::path_bytes")]
    pub state_dir: PathBuf,
    /// Precisions named for this job (`--precisions`): they win over the
    /// settings file's. None: the settings file's, else the knobs'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precisions: Option<Vec<Precision>>,
    /// Devices named for this job (`--devices`), as `precisions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceRequest>>,
    /// How to measure. `threads` is resolved (never 0).
    pub knobs: Knobs,
    /// The worker is killed after this many seconds (engine builds not
    /// counted: they have `knobs.build_timeout_seconds`). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Started by the daemon: refuse a model or settings file that is a
    /// symbolic link, and keep the paths the settings name inside the drop
    /// folder.
    pub untrusted_folder: bool,
    /// The daemon's wait for a quiet machine ran out: the share of the CPUs
    /// others used then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_busy: Option<f64>,
}

/// What the starter of a job decides beyond the knobs: `precisiond run`'s
/// per-job flags, or the daemon's fixed choices. None: the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    /// The report [default: MODEL.report.toml beside the model].
    pub out: Option<PathBuf>,
    pub settings: Option<PathBuf>,
    /// [default: .precisiond/ beside the model]
    pub state_dir: Option<PathBuf>,
    pub precisions: Option<Vec<Precision>>,
    pub devices: Option<Vec<DeviceRequest>>,
    pub timeout_seconds: Option<f64>,
    pub untrusted_folder: bool,
    pub started_busy: Option<f64>,
}

/// What a job measures once the model's settings file is read.
#[derive(Debug, Clone)]
pub struct Effective {
    pub precisions: Vec<Precision>,
    pub devices: Vec<DeviceRequest>,
    pub bench: BenchConfig,
    pub accuracy: AccuracyThresholds,
}

impl JobSpec {
    /// The job for `model`: every bound checked, every default resolved.
    pub fn build(model: PathBuf, mut knobs: Knobs, given: Given) -> Result<JobSpec, BadKnob> {
        knobs.validate()?;
        if let Some(seconds) = given.timeout_seconds {
            Knob::WorkerTimeout.check(seconds)?;
        }
        if given.precisions.as_ref().is_some_and(Vec::is_empty) {
            return Err(Knob::Precisions.bad(Problem::NoPrecision));
        }
        if given.devices.as_ref().is_some_and(Vec::is_empty) {
            return Err(Knob::Devices.bad(Problem::NoDevice));
        }
        knobs.threads = knobs.threads();
        Ok(JobSpec {
            report: given
                .out
                .unwrap_or_else(|| crate::report::default_path(&model)),
            state_dir: given
                .state_dir
                .unwrap_or_else(|| crate::fsutil::state_dir_beside(&model)),
            model,
            settings: given.settings,
            precisions: given.precisions,
            devices: given.devices,
            knobs,
            timeout_seconds: given.timeout_seconds,
            untrusted_folder: given.untrusted_folder,
            started_busy: given.started_busy,
        })
    }

    /// The spec as the worker reads it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a job spec serialises")
    }

    /// A spec written by [`JobSpec::to_toml`], checked as
    /// [`JobSpec::build`] checks it.
    pub fn parse(text: &str) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| SpecError::Syntax(e.to_string()))?;
        spec.knobs.validate()?;
        if let Some(seconds) = spec.timeout_seconds {
            Knob::WorkerTimeout.check(seconds)?;
        }
        Ok(spec)
    }

    /// The settings file this job reads: the one named, else `MODEL.toml`.
    pub fn settings_path(&self) -> PathBuf {
        self.settings
            .clone()
            .unwrap_or_else(|| crate::settings::default_path(&self.model))
    }

    /// The worker's time limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_seconds.map(Duration::from_secs_f64)
    }

    /// What is measured once the model's settings file is read: the
    /// precisions and devices named for the job win over the file's, the
    /// file's over the knobs'; the file's `max_seconds` and `[accuracy]`
    /// win over the knobs'.
    pub fn with_settings(&self, settings: &ModelSettings) -> Effective {
        let mut bench = self.knobs.bench();
        if let Some(seconds) = settings.max_seconds {
            bench.max_seconds = seconds;
        }
        Effective {
            precisions: self
                .precisions
                .clone()
                .or_else(|| settings.precisions.clone())
                .unwrap_or_else(|| self.knobs.precisions.clone()),
            devices: self
                .devices
                .clone()
                .or_else(|| settings.devices.clone())
                .unwrap_or_else(|| self.knobs.devices.clone()),
            bench,
            accuracy: self
                .knobs
                .accuracy
                .with(&settings.accuracy.unwrap_or_default()),
        }
    }
}

/// A job spec the worker cannot take.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the job spec is not valid TOML for this worker: {0}")]
    Syntax(String),
    #[error("the job spec's {0}")]
    Bad(#[from] BadKnob),
}

#[cfg(test)]
mod tests;
