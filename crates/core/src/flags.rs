//! Command-line flags shared by `precisiond` and `precisiond-worker`.
//! `precisiond run`'s flags make a [`JobSpec`] through [`JobFlags::spec`]
//! (the worker run by hand takes the same flags, through the same
//! function); the supervisor hands the spec to the worker whole.

use crate::devices::{self, DeviceRequest};
use crate::job::{BadFlag, Given, JobSpec, Knobs};
use crate::precision::{self, Precision};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The model to measure: TorchScript (.pt, .pth, .ts, .torchscript) or the FP32
    /// AOTInductor package of a family (NAME.pt2, with NAME.bf16.pt2 ... beside it).
    pub model: PathBuf,
    #[command(flatten)]
    pub flags: JobFlags,
}

impl RunArgs {
    /// The job these arguments describe, every bound checked.
    pub fn spec(&self) -> Result<JobSpec, BadFlag> {
        self.flags.spec(self.model.clone())
    }
}

/// The flags of one measurement. The knobs' defaults are [`Knobs`]'s.
#[derive(Debug, Clone, Args)]
pub struct JobFlags {
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
    #[arg(long, default_value_t = Knobs::default().max_seconds)]
    pub max_seconds: f64,
    /// Stop timing once the median's 95% confidence interval is within this
    /// many percent of it.
    #[arg(long, default_value_t = Knobs::default().target_ci_percent)]
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
    /// does: a link in a drop folder must not lead the worker outside).
    #[arg(long, hide = true)]
    pub no_follow_symlinks: bool,
    /// Kill the worker after this many seconds and report the model as
    /// failed. Engine builds are not counted: they have their own limit.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Limit of one engine build (TensorRT's trtexec), in seconds.
    #[arg(long, default_value_t = Knobs::default().build_timeout_seconds)]
    pub build_timeout: f64,
    /// Devices, comma separated: auto (the CPU and every CUDA device
    /// libtorch sees), cpu, cuda, cuda:0, ... [default: the settings file's, else auto].
    #[arg(long, value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
    /// TensorRT's trtexec, for INT8 (and FP16/BF16) on CUDA devices
    /// [default: PATH, then /usr/src/tensorrt/bin].
    #[arg(long)]
    pub trtexec: Option<PathBuf>,
    /// An operator library to load before the model (a shared object that
    /// registers custom TorchScript operators); repeat for more.
    /// torchvision's is found without it.
    #[arg(long = "op-library", value_name = "PATH")]
    pub op_libraries: Vec<PathBuf>,
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
    #[arg(long, default_value_t = Knobs::default().accuracy.min_cosine)]
    pub min_cosine: f64,
    /// Accuracy verdict: the worst output's SQNR must be at least this many dB.
    #[arg(long, default_value_t = Knobs::default().accuracy.min_sqnr_db)]
    pub min_sqnr_db: f64,
    /// Accuracy verdict: top-1 agreement with FP32 (classifier outputs) must
    /// be at least this share.
    #[arg(long, default_value_t = Knobs::default().accuracy.min_top1_agreement)]
    pub min_top1_agreement: f64,
    /// A result is marked contended when other processes used more than
    /// this share (0 to 1) of the CPUs the worker had while it was timed.
    #[arg(long, default_value_t = Knobs::default().busy_threshold)]
    pub busy_threshold: f64,
    /// ... or when the median's 95% confidence interval stays wider than
    /// this many percent of it (judged on at least 10 timed calls).
    #[arg(long, default_value_t = Knobs::default().contended_ci_percent)]
    pub contended_ci_percent: f64,
    /// ... or when p90 is more than this many times the median.
    #[arg(long, default_value_t = Knobs::default().contended_p90_ratio)]
    pub contended_p90_ratio: f64,
    /// A result is marked throttled when the CPU clock fell by more than
    /// this many percent while it was timed (or a thermal zone reached its
    /// trip point).
    #[arg(long, default_value_t = Knobs::default().clock_drop_percent)]
    pub clock_drop_percent: f64,
    /// Set by hand to say the machine was busy when the job started: the
    /// share of the CPUs others used then (the daemon sets it in the spec).
    #[arg(long, hide = true)]
    pub started_busy: Option<f64>,
}

impl JobFlags {
    /// The job for `model`: the knobs these flags set (a struct literal
    /// without `..`, so a knob added to [`Knobs`] must be given a flag or a
    /// default here), every bound checked and an error named by its flag.
    pub fn spec(&self, model: PathBuf) -> Result<JobSpec, BadFlag> {
        let defaults = Knobs::default();
        let knobs = Knobs {
            // A list on the command line wins over the settings file's; it
            // goes in `Given`. These are the lists used when neither names any.
            precisions: defaults.precisions,
            devices: defaults.devices,
            threads: self.threads.unwrap_or(0),
            max_seconds: self.max_seconds,
            target_ci_percent: self.target_ci_percent,
            build_timeout_seconds: self.build_timeout,
            probe: !self.no_probe,
            trtexec: self.trtexec.clone(),
            op_libraries: self.op_libraries.clone(),
            profile: self.profile,
            chart: !self.no_chart,
            accuracy: crate::accuracy::AccuracyThresholds {
                min_cosine: self.min_cosine,
                min_sqnr_db: self.min_sqnr_db,
                min_top1_agreement: self.min_top1_agreement,
            },
            busy_threshold: self.busy_threshold,
            contended_ci_percent: self.contended_ci_percent,
            contended_p90_ratio: self.contended_p90_ratio,
            clock_drop_percent: self.clock_drop_percent,
        };
        let given = Given {
            out: self.out.clone(),
            settings: self.settings.clone(),
            state_dir: self.state_dir.clone(),
            precisions: self.precisions.clone().map(|l| l.0),
            devices: self.devices.clone().map(|l| l.0),
            timeout_seconds: self.timeout,
            untrusted_folder: self.no_follow_symlinks,
            started_busy: self.started_busy,
        };
        Ok(JobSpec::build(model, knobs, given)?)
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

/// The value parser of every `--precisions` flag.
pub fn parse_precisions(list: &str) -> Result<PrecisionList, String> {
    precision::parse_list(list).map(PrecisionList)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Text,
    Toml,
}

/// `detect`'s flags; the supervisor hands them to the worker as TOML, as
/// it hands a [`JobSpec`].
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Read a saved /proc/cpuinfo instead of this machine's (the probe is skipped).
    #[arg(long)]
    #[serde(
        default,
        with = "crate::path_bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpuinfo: Option<PathBuf>,
    /// Skip the micro-benchmark probe.
    #[arg(long)]
    pub no_probe: bool,
}

/// The worker's command line for a job: `run MODEL --job -` (the model
/// stays what `ps` shows), the spec itself on its standard input.
pub fn worker_run_args(spec: &JobSpec) -> Vec<OsString> {
    vec![
        "run".into(),
        spec.model.clone().into(),
        HANDED_FLAG.into(),
        "-".into(),
    ]
}

/// The worker's command line for `detect`, the arguments on its standard input.
pub fn worker_detect_args() -> Vec<OsString> {
    vec!["detect".into(), HANDED_FLAG.into(), "-".into()]
}

/// The worker's hidden flag that names where its job comes from ("-":
/// standard input).
pub const HANDED_FLAG: &str = "--job";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn spec(args: &[&str]) -> Result<JobSpec, BadFlag> {
        let mut argv = vec!["precisiond", "/d/m.pt"];
        argv.extend(args);
        Cli::try_parse_from(argv).unwrap().run.spec()
    }

    #[test]
    fn no_flags_is_the_default_knobs() {
        let s = spec(&[]).unwrap();
        let expected = Knobs {
            threads: s.knobs.threads,
            ..Knobs::default()
        };
        assert_eq!(s.knobs, expected);
        assert_eq!(s.precisions, None);
        assert_eq!(s.devices, None);
        assert_eq!(s.timeout_seconds, None);
        assert!(!s.untrusted_folder);
    }

    #[test]
    fn every_flag_reaches_the_spec() {
        let s = spec(&[
            "--precisions=fp32,int8",
            "--threads=3",
            "--settings=/s.toml",
            "--max-seconds=0.5",
            "--target-ci-percent=2",
            "--out=/o.toml",
            "--state-dir=/st",
            "--no-probe",
            "--no-follow-symlinks",
            "--timeout=7",
            "--build-timeout=90",
            "--devices=cpu",
            "--trtexec=/t",
            "--op-library=/ops/a.so",
            "--op-library=/ops/b.so",
            "--profile",
            "--no-chart",
            "--min-cosine=0.5",
            "--min-sqnr-db=3",
            "--min-top1-agreement=0.5",
            "--busy-threshold=0.5",
            "--contended-ci-percent=9",
            "--contended-p90-ratio=3",
            "--clock-drop-percent=40",
            "--started-busy=0.6",
        ])
        .unwrap();
        let expected = JobSpec {
            model: "/d/m.pt".into(),
            report: "/o.toml".into(),
            settings: Some("/s.toml".into()),
            state_dir: "/st".into(),
            precisions: Some(vec![Precision::Fp32, Precision::Int8]),
            devices: Some(vec![DeviceRequest::Cpu]),
            knobs: Knobs {
                precisions: Knobs::default().precisions,
                devices: Knobs::default().devices,
                threads: 3,
                max_seconds: 0.5,
                target_ci_percent: 2.0,
                build_timeout_seconds: 90.0,
                probe: false,
                trtexec: Some("/t".into()),
                op_libraries: vec!["/ops/a.so".into(), "/ops/b.so".into()],
                profile: true,
                chart: false,
                accuracy: crate::accuracy::AccuracyThresholds {
                    min_cosine: 0.5,
                    min_sqnr_db: 3.0,
                    min_top1_agreement: 0.5,
                },
                busy_threshold: 0.5,
                contended_ci_percent: 9.0,
                contended_p90_ratio: 3.0,
                clock_drop_percent: 40.0,
            },
            timeout_seconds: Some(7.0),
            untrusted_folder: true,
            started_busy: Some(0.6),
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn a_bad_value_is_named_by_its_flag() {
        for (flag, value) in [
            ("--contended-ci-percent", "0"),
            ("--clock-drop-percent", "0"),
            ("--timeout", "0"),
            ("--build-timeout", "-1"),
            ("--min-cosine", "2"),
            ("--max-seconds", "0"),
        ] {
            let e = spec(&[&format!("{flag}={value}")]).unwrap_err();
            assert_eq!(e.0.knob.flag(), flag);
            assert!(e.to_string().starts_with(&format!("{flag} must be")), "{e}");
        }
    }

    #[test]
    fn detect_args_round_trip() {
        let args = DetectArgs {
            format: OutputFormat::Toml,
            cpuinfo: Some("/c".into()),
            no_probe: true,
        };
        let text = toml::to_string(&args).unwrap();
        assert_eq!(toml::from_str::<DetectArgs>(&text).unwrap(), args);
    }
}
