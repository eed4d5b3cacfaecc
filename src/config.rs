//! The daemon's configuration: `/etc/precisiond/precisiond.toml`
//! (documented in `etc/precisiond.toml`), overridden by command-line flags.
//!
//! Every key has a default, so an empty file (or none at all) works. Unknown
//! keys and bad values are errors that name the key and the file: a typo in a
//! config must not silently fall back to a default.

use precisiond_core::accuracy::AccuracyThresholds;
use precisiond_core::bench::BenchConfig;
use precisiond_core::devices::DeviceRequest;
use precisiond_core::precision::Precision;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the service looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/precisiond/precisiond.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Drop folders to watch (not recursive).
    pub folders: Vec<PathBuf>,
    /// Precisions measured for a model whose settings file names none.
    pub precisions: Vec<Precision>,
    /// CPU threads for every precision; 0 means all cores.
    pub threads: usize,
    /// Time budget per precision and device, warm-up included, in seconds.
    pub max_seconds: f64,
    /// Timing of a precision stops once the median's 95% confidence interval
    /// is within this many percent of it.
    pub target_ci_percent: f64,
    /// The worker measuring one model is killed after this many seconds and
    /// the model gets a failed report.
    pub worker_timeout_seconds: f64,
    /// A written file is taken once its size has not changed for this long.
    pub settle_ms: u64,
    /// How often a model whose worker crashed, hung or ran out of disk is
    /// tried in a row before precisiond gives up on it until it changes, the
    /// daemon restarts or the config is reloaded.
    pub max_attempts: u32,
    /// The wait before the second attempt, doubled for each further one.
    pub retry_backoff_seconds: f64,
    /// An engine build (TensorRT) is a phase of its own, with this limit
    /// instead of `worker_timeout_seconds`.
    pub build_timeout_seconds: f64,
    /// Larger model files are not read; they get a failed report instead.
    pub max_model_bytes: u64,
    /// Run the hardware micro-benchmark, once per boot and libtorch version
    /// (cached in the state folder); flags alone decide `native` otherwise.
    pub probe: bool,
    /// error, warn, info, debug or trace; `PRECISIOND_LOG` overrides it.
    pub log_level: LogLevel,
    /// Devices measured for a model whose settings file names none: "auto"
    /// (the CPU and every CUDA device libtorch sees), "cpu", "cuda:0", ...
    pub devices: Vec<DeviceRequest>,
    /// TensorRT's trtexec [default: PATH, then /usr/src/tensorrt/bin].
    pub trtexec: Option<PathBuf>,
    /// Profile each result operator by operator (`precisiond run --profile`).
    pub profile: bool,
    /// Write the chart `NAME.pt.report.svg` beside each report.
    pub chart: bool,
    /// The `[accuracy]` table: the bounds of each result's accuracy verdict.
    pub accuracy: AccuracyThresholds,
    /// A job starts once other processes use less than this share (0 to 1)
    /// of the CPUs; a result during which they used more is marked contended.
    pub busy_threshold: f64,
    /// How long a job waits for a quiet machine before it measures anyway
    /// (and its report says the machine was busy); 0: no wait.
    pub busy_wait_seconds: f64,
    /// A result whose median's 95% confidence interval stays wider than this
    /// many percent of it is marked contended.
    pub contended_ci_percent: f64,
    /// A result whose p90 is more than this many times its median is marked contended.
    pub contended_p90_ratio: f64,
    /// A result during which the CPU clock fell by more than this many
    /// percent is marked throttled.
    pub clock_drop_percent: f64,
    /// A folder where the daemon keeps `precisiond.prom`, its metrics for
    /// node_exporter's textfile collector; absent: no metrics file.
    pub textfile_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let bench = BenchConfig::default();
        let limits = precisiond_core::conditions::Limits::default();
        Config {
            folders: Vec::new(),
            precisions: Precision::ALL.to_vec(),
            threads: 0,
            max_seconds: bench.max_seconds,
            target_ci_percent: bench.target_rel_ci * 100.0,
            worker_timeout_seconds: 600.0,
            settle_ms: 1000,
            max_attempts: 3,
            retry_backoff_seconds: 60.0,
            build_timeout_seconds: precisiond_core::flags::DEFAULT_BUILD_TIMEOUT_SECONDS,
            max_model_bytes: 4_000_000_000,
            probe: true,
            log_level: LogLevel::Info,
            devices: precisiond_core::devices::default_requests(),
            trtexec: None,
            profile: false,
            chart: true,
            accuracy: AccuracyThresholds::default(),
            busy_threshold: limits.busy_threshold,
            busy_wait_seconds: 120.0,
            contended_ci_percent: limits.max_rel_ci * 100.0,
            contended_p90_ratio: limits.max_p90_ratio,
            clock_drop_percent: limits.max_clock_drop * 100.0,
            textfile_dir: None,
        }
    }
}

/// Command-line flags that override the file. `None`/empty: keep the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub folders: Vec<PathBuf>,
    pub precisions: Option<Vec<Precision>>,
    pub max_seconds: Option<f64>,
    pub worker_timeout_seconds: Option<f64>,
    pub settle_ms: Option<u64>,
}

impl Config {
    /// Parses a config file's text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text)
            .map_err(|e| format!("config file {origin}: {}", e.to_string().trim_end()))?;
        config
            .validate()
            .map_err(|e| format!("config file {origin}: {e}"))?;
        Ok(config)
    }

    /// The config from `path` (which must exist), or from [`DEFAULT_PATH`]
    /// when that exists, or the built-in defaults; then `overrides` applied.
    /// Returns the file actually read, for reloads and messages.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Option<PathBuf>), String> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    format!(
                        "cannot read config file {}: {e}; fix the path given to --config",
                        p.display()
                    )
                })?;
                Config::parse(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        config.apply(overrides)?;
        Ok((config, path))
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), String> {
        if !o.folders.is_empty() {
            self.folders = o.folders.clone();
        }
        if let Some(p) = &o.precisions {
            self.precisions = p.clone();
        }
        if let Some(s) = o.max_seconds {
            self.max_seconds = s;
        }
        if let Some(s) = o.worker_timeout_seconds {
            self.worker_timeout_seconds = s;
        }
        if let Some(ms) = o.settle_ms {
            self.settle_ms = ms;
        }
        self.validate().map_err(|e| format!("command line: {e}"))
    }

    fn validate(&self) -> Result<(), String> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "`{key}` must be a positive number of seconds, got {v}"
                ))
            }
        };
        positive("max_seconds", self.max_seconds)?;
        positive("worker_timeout_seconds", self.worker_timeout_seconds)?;
        positive("retry_backoff_seconds", self.retry_backoff_seconds)?;
        positive("build_timeout_seconds", self.build_timeout_seconds)?;
        self.accuracy
            .validate()
            .map_err(|e| format!("[accuracy] {e}"))?;
        if !(self.busy_wait_seconds.is_finite() && self.busy_wait_seconds >= 0.0) {
            return Err(format!(
                "`busy_wait_seconds` must be 0 (no wait) or a positive number of seconds, got {}",
                self.busy_wait_seconds
            ));
        }
        if !(0.0..=1.0).contains(&self.busy_threshold) {
            return Err(format!(
                "`busy_threshold` must be a share between 0 and 1 (0.25: a quarter of the CPUs), got {}",
                self.busy_threshold
            ));
        }
        for (key, v) in [
            ("contended_ci_percent", self.contended_ci_percent),
            ("clock_drop_percent", self.clock_drop_percent),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!("`{key}` must be between 0 and 100, got {v}"));
            }
        }
        if !(self.contended_p90_ratio.is_finite() && self.contended_p90_ratio >= 1.0) {
            return Err(format!(
                "`contended_p90_ratio` must be at least 1, got {}",
                self.contended_p90_ratio
            ));
        }
        if self.max_attempts == 0 {
            return Err("`max_attempts` must be at least 1 (1: never retry)".into());
        }
        if !(self.target_ci_percent > 0.0 && self.target_ci_percent < 100.0) {
            return Err(format!(
                "`target_ci_percent` must be between 0 and 100, got {}",
                self.target_ci_percent
            ));
        }
        if self.precisions.is_empty() {
            return Err(
                "`precisions` is empty: list at least one of \"fp32\", \"fp16\", \"bf16\", \"int8\""
                    .into(),
            );
        }
        if self.devices.is_empty() {
            return Err("`devices` is empty: list \"auto\", \"cpu\" or \"cuda:N\"".into());
        }
        if self.max_model_bytes == 0 {
            return Err("`max_model_bytes` must be above 0".into());
        }
        if let Some(dir) = &self.textfile_dir {
            if !dir.is_absolute() {
                return Err(format!(
                    "`textfile_dir` must be an absolute path (node_exporter's \
                     --collector.textfile.directory), got {dir:?}"
                ));
            }
        }
        // The settle time is how long a quiet file waits; beyond a minute a
        // user would think the daemon is not watching.
        if self.settle_ms > 60_000 {
            return Err(format!(
                "`settle_ms` must be at most 60000 (one minute), got {}",
                self.settle_ms
            ));
        }
        Ok(())
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    pub fn worker_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.worker_timeout_seconds)
    }

    /// The wait before attempt `next` (2, 3, ...): the back-off, doubled for
    /// each attempt after the second, at most a day.
    pub fn retry_delay(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16) as i32;
        Duration::from_secs_f64((self.retry_backoff_seconds * 2f64.powi(doublings)).min(86_400.0))
    }

    /// The threads a job really uses (0 means all cores).
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// True when both configs measure a model the same way; otherwise the
    /// reports made under one are stale under the other.
    pub fn measures_like(&self, other: &Config) -> bool {
        self.precisions == other.precisions
            && self.threads == other.threads
            && self.max_seconds == other.max_seconds
            && self.target_ci_percent == other.target_ci_percent
            && self.probe == other.probe
            && self.devices == other.devices
            && self.trtexec == other.trtexec
            && self.accuracy == other.accuracy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("", "x.toml").unwrap(), Config::default());
    }

    #[test]
    fn documented_default_config_parses_and_matches_defaults() {
        let text = include_str!("../etc/precisiond.toml");
        let config = Config::parse(text, "etc/precisiond.toml").unwrap();
        let expected = Config {
            folders: config.folders.clone(),
            ..Config::default()
        };
        assert_eq!(
            config, expected,
            "etc/precisiond.toml must document the defaults"
        );
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let e = Config::parse("max_secnds = 2.0\n", "/etc/p.toml").unwrap_err();
        assert!(e.contains("/etc/p.toml"), "{e}");
        assert!(e.contains("max_secnds"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        for (text, key) in [
            ("max_seconds = -1.0\n", "max_seconds"),
            ("max_seconds = \"fast\"\n", "max_seconds"),
            ("precisions = [\"fp8\"]\n", "precisions"),
            ("precisions = []\n", "precisions"),
            ("settle_ms = -5\n", "settle_ms"),
            ("target_ci_percent = 150.0\n", "target_ci_percent"),
            ("log_level = \"loud\"\n", "log_level"),
            ("devices = [\"tpu\"]\n", "devices"),
            ("devices = []\n", "devices"),
            ("[accuracy]\nmin_cosine = 2.0\n", "min_cosine"),
            ("[accuracy]\nmin_cosin = 0.9\n", "min_cosin"),
            ("busy_threshold = 25.0\n", "busy_threshold"),
            ("busy_wait_seconds = -1.0\n", "busy_wait_seconds"),
            ("contended_ci_percent = 0.0\n", "contended_ci_percent"),
            ("contended_p90_ratio = 0.5\n", "contended_p90_ratio"),
            ("clock_drop_percent = 200.0\n", "clock_drop_percent"),
            ("textfile_dir = \"metrics\"\n", "textfile_dir"),
            ("textfile_dir = 3\n", "textfile_dir"),
        ] {
            let e = Config::parse(text, "/etc/p.toml").unwrap_err();
            assert!(e.contains("/etc/p.toml") && e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn textfile_dir_is_off_unless_set() {
        assert_eq!(Config::default().textfile_dir, None);
        let c = Config::parse(
            "textfile_dir = \"/var/lib/prometheus/node-exporter\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            c.textfile_dir,
            Some(PathBuf::from("/var/lib/prometheus/node-exporter"))
        );
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = Config::parse("max_seconds = 2.0\nfolders = [\"/a\"]\n", "f").unwrap();
        c.apply(&Overrides {
            folders: vec!["/b".into()],
            max_seconds: Some(0.5),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.folders, vec![PathBuf::from("/b")]);
        assert_eq!(c.max_seconds, 0.5);
        let e = c
            .apply(&Overrides {
                max_seconds: Some(0.0),
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(
            e.contains("command line") && e.contains("max_seconds"),
            "{e}"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load(
            Some(Path::new("/nonexistent/p.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/p.toml"), "{e}");
    }
}
