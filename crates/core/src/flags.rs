//! Command-line flags shared by `precisiond` and `precisiond-worker`:
//! the supervisor parses them, checks what it can without libtorch, and
//! hands the same arguments to the worker.

use crate::accuracy::AccuracyThresholds;
use crate::bench::BenchConfig;
use crate::conditions::Limits;
use crate::devices::{self, DeviceRequest};
use crate::precision::{self, Precision};
use clap::{Args, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The model to measure: TorchScript (.pt, .pth, .ts, .torchscript) or the FP32
    /// AOTInductor package of a family (NAME.pt2, with NAME.bf16.pt2 ... beside it).
    pub model: PathBuf,
    /// Precisions to measure, comma separated [default: the settings file's, else fp32,fp16,bf16,int8].
    #[arg(long, value_parser = parse_precisions)]
    pub precisions: Option<PrecisionList>,
    /// CPU threads for every precision [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Per-model settings (inputs, calibration) [default: MODEL.toml beside the model].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Time budget per precision, warm-up included, in seconds.
    #[arg(long, default_value_t = BenchConfig::default().max_seconds)]
    pub max_seconds: f64,
    /// Stop timing once the median's 95% confidence interval is within this
    /// many percent of it.
    #[arg(long, default_value_t = BenchConfig::default().target_rel_ci * 100.0)]
    pub target_ci_percent: f64,
    /// Where to write the report [default: MODEL.report.toml beside the model].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder for artefacts such as quantized models [default: .precisiond/ beside the model].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Skip the hardware micro-benchmark (flags alone decide `native`).
    #[arg(long)]
    pub no_probe: bool,
    /// Refuse a model or settings file that is a symbolic link (the daemon
    /// sets it: a link in a drop folder must not lead the worker outside).
    #[arg(long, hide = true)]
    pub no_follow_symlinks: bool,
    /// Kill the worker after this many seconds and report the model as
    /// failed. Engine builds are not counted: they have their own limit.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Limit of one engine build (TensorRT's trtexec), in seconds.
    #[arg(long, default_value_t = DEFAULT_BUILD_TIMEOUT_SECONDS)]
    pub build_timeout: f64,
    /// Devices, comma separated: auto (the CPU and every CUDA device
    /// libtorch sees), cpu, cuda, cuda:0, ... [default: the settings file's, else auto].
    #[arg(long, value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
    /// TensorRT's trtexec, for INT8 (and FP16/BF16) on CUDA devices
    /// [default: PATH, then /usr/src/tensorrt/bin].
    #[arg(long)]
    pub trtexec: Option<PathBuf>,
    /// Also profile each result operator by operator (a few extra forward()
    /// calls after the timed ones): the top operators by self time, and for
    /// INT8 the ones that still run in floating point, go into the report.
    #[arg(long)]
    pub profile: bool,
    /// Do not write the report's chart, REPORT.svg beside REPORT.toml
    /// (`NAME.pt.report.svg`).
    #[arg(long)]
    pub no_chart: bool,
    /// Accuracy verdict: the worst output's cosine with FP32's must be at
    /// least this (a settings file's [accuracy] min_cosine wins).
    #[arg(long, default_value_t = AccuracyThresholds::default().min_cosine)]
    pub min_cosine: f64,
    /// Accuracy verdict: the worst output's SQNR must be at least this many dB.
    #[arg(long, default_value_t = AccuracyThresholds::default().min_sqnr_db)]
    pub min_sqnr_db: f64,
    /// Accuracy verdict: top-1 agreement with FP32 (classifier outputs) must
    /// be at least this share.
    #[arg(long, default_value_t = AccuracyThresholds::default().min_top1_agreement)]
    pub min_top1_agreement: f64,
    /// A result is marked contended when other processes used more than
    /// this share (0 to 1) of the CPUs the worker had while it was timed.
    #[arg(long, default_value_t = Limits::default().busy_threshold)]
    pub busy_threshold: f64,
    /// ... or when the median's 95% confidence interval stays wider than
    /// this many percent of it (judged on at least 10 timed calls).
    #[arg(long, default_value_t = Limits::default().max_rel_ci * 100.0)]
    pub contended_ci_percent: f64,
    /// ... or when p90 is more than this many times the median.
    #[arg(long, default_value_t = Limits::default().max_p90_ratio)]
    pub contended_p90_ratio: f64,
    /// A result is marked throttled when the CPU clock fell by more than
    /// this many percent while it was timed (or a thermal zone reached its
    /// trip point).
    #[arg(long, default_value_t = Limits::default().max_clock_drop * 100.0)]
    pub clock_drop_percent: f64,
    /// Set by the daemon when its wait for a quiet machine ran out: the
    /// share of the CPUs others used then.
    #[arg(long, hide = true)]
    pub started_busy: Option<f64>,
}

/// The default limit of one engine build: TensorRT builds of large models
/// on a Jetson take tens of minutes.
pub const DEFAULT_BUILD_TIMEOUT_SECONDS: f64 = 1800.0;

impl RunArgs {
    pub fn report_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| crate::report::default_path(&self.model))
    }

    pub fn bench_config(&self) -> Result<BenchConfig, String> {
        if !(self.max_seconds.is_finite() && self.max_seconds > 0.0) {
            return Err(format!(
                "--max-seconds must be a positive number, got {}",
                self.max_seconds
            ));
        }
        if !(self.target_ci_percent > 0.0 && self.target_ci_percent < 100.0) {
            return Err(format!(
                "--target-ci-percent must be between 0 and 100, got {}",
                self.target_ci_percent
            ));
        }
        Ok(BenchConfig {
            max_seconds: self.max_seconds,
            target_rel_ci: self.target_ci_percent / 100.0,
            ..BenchConfig::default()
        })
    }

    /// The accuracy thresholds the flags give, checked.
    pub fn accuracy_thresholds(&self) -> Result<AccuracyThresholds, String> {
        let t = AccuracyThresholds {
            min_cosine: self.min_cosine,
            min_sqnr_db: self.min_sqnr_db,
            min_top1_agreement: self.min_top1_agreement,
        };
        // The keys are the flags' names with dashes.
        t.validate().map_err(|e| {
            e.replace('`', "")
                .replace("min_", "--min-")
                .replace('_', "-")
        })?;
        Ok(t)
    }

    /// The thresholds a result's conditions are judged by.
    pub fn limits(&self) -> Result<Limits, String> {
        let share = |flag: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{flag} must be a share between 0 and 1, got {v}"))
            }
        };
        if !(self.contended_p90_ratio.is_finite() && self.contended_p90_ratio >= 1.0) {
            return Err(format!(
                "--contended-p90-ratio must be a number of at least 1, got {}",
                self.contended_p90_ratio
            ));
        }
        Ok(Limits {
            busy_threshold: share("--busy-threshold", self.busy_threshold)?,
            max_rel_ci: share("--contended-ci-percent", self.contended_ci_percent / 100.0)?,
            max_p90_ratio: self.contended_p90_ratio,
            max_clock_drop: share("--clock-drop-percent", self.clock_drop_percent / 100.0)?,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The same arguments, for the worker's command line.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.model.clone().into()];
        let mut opt = |flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        if let Some(PrecisionList(list)) = &self.precisions {
            let names: Vec<&str> = list.iter().map(|p| p.name()).collect();
            opt("--precisions", names.join(",").into());
        }
        opt("--threads", self.threads().to_string().into());
        if let Some(s) = &self.settings {
            opt("--settings", s.clone().into());
        }
        opt("--max-seconds", self.max_seconds.to_string().into());
        opt(
            "--target-ci-percent",
            self.target_ci_percent.to_string().into(),
        );
        opt("--out", self.report_path().into());
        if let Some(s) = &self.state_dir {
            opt("--state-dir", s.clone().into());
        }
        if let Some(DeviceList(list)) = &self.devices {
            opt("--devices", devices::list_to_string(list).into());
        }
        if let Some(t) = &self.trtexec {
            opt("--trtexec", t.clone().into());
        }
        opt("--build-timeout", self.build_timeout.to_string().into());
        opt("--min-cosine", self.min_cosine.to_string().into());
        opt("--min-sqnr-db", self.min_sqnr_db.to_string().into());
        opt(
            "--min-top1-agreement",
            self.min_top1_agreement.to_string().into(),
        );
        opt("--busy-threshold", self.busy_threshold.to_string().into());
        opt(
            "--contended-ci-percent",
            self.contended_ci_percent.to_string().into(),
        );
        opt(
            "--contended-p90-ratio",
            self.contended_p90_ratio.to_string().into(),
        );
        opt(
            "--clock-drop-percent",
            self.clock_drop_percent.to_string().into(),
        );
        if let Some(share) = self.started_busy {
            opt("--started-busy", share.to_string().into());
        }
        if self.no_probe {
            args.push("--no-probe".into());
        }
        if self.no_follow_symlinks {
            args.push("--no-follow-symlinks".into());
        }
        if self.profile {
            args.push("--profile".into());
        }
        if self.no_chart {
            args.push("--no-chart".into());
        }
        args
    }
}

/// A comma-separated device list as one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(pub Vec<DeviceRequest>);

fn parse_devices(list: &str) -> Result<DeviceList, String> {
    devices::parse_list(list).map(DeviceList)
}

/// A comma-separated precision list as one argument (clap would take a
/// bare `Vec` for a repeated flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecisionList(pub Vec<Precision>);

fn parse_precisions(list: &str) -> Result<PrecisionList, String> {
    precision::parse_list(list).map(PrecisionList)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Toml,
}

#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Read a saved /proc/cpuinfo instead of this machine's (the probe is skipped).
    #[arg(long)]
    pub cpuinfo: Option<PathBuf>,
    /// Skip the micro-benchmark probe.
    #[arg(long)]
    pub no_probe: bool,
}

impl DetectArgs {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--format".into(),
            match self.format {
                OutputFormat::Text => "text",
                OutputFormat::Toml => "toml",
            }
            .into(),
        ];
        if let Some(c) = &self.cpuinfo {
            args.push("--cpuinfo".into());
            args.push(c.clone().into());
        }
        if self.no_probe {
            args.push("--no-probe".into());
        }
        args
    }
}
