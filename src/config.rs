//! The daemon's configuration: `/etc/precisiond/precisiond.toml`
//! (documented in `etc/precisiond.toml`), overridden by command-line flags.
//!
//! Every key has a default, so an empty file (or none at all) works. Unknown
//! keys and bad values are errors that name the key and the file: a typo in a
//! config must not silently fall back to a default.
//!
//! How a model is measured (precisions, budget, thresholds, ...) is not
//! defined here: those keys are the [`Knobs`] of `precisiond_core::job`,
//! read from the same top-level table, bounded there, and turned into a
//! worker's job by [`Config::job_spec`].

use precisiond_core::job::{BadKnob, Given, JobSpec, Knob, Knobs};
use precisiond_core::precision::Precision;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the service looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/precisiond/precisiond.toml";

/// The daemon's own keys, and the measurement knobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Drop folders to watch (not recursive).
    pub folders: Vec<PathBuf>,
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
    /// Larger model files are not read; they get a failed report instead.
    pub max_model_bytes: u64,
    /// error, warn, info, debug or trace; `PRECISIOND_LOG` overrides it.
    pub log_level: LogLevel,
    /// How long a job waits for a quiet machine (less than the knobs'
    /// `busy_threshold` used by others) before it measures anyway (and its
    /// report says the machine was busy); 0: no wait.
    pub busy_wait_seconds: f64,
    /// A folder where the daemon keeps `precisiond.prom`, its metrics for
    /// node_exporter's textfile collector; absent: no metrics file.
    pub textfile_dir: Option<PathBuf>,
    /// How models are measured: top-level keys of the same file (and
    /// `[accuracy]`), read by [`Config::parse`] into their own struct.
    #[serde(skip)]
    pub knobs: Knobs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
        Config {
            folders: Vec::new(),
            worker_timeout_seconds: 600.0,
            settle_ms: 1000,
            max_attempts: 3,
            retry_backoff_seconds: 60.0,
            max_model_bytes: 4_000_000_000,
            log_level: LogLevel::Info,
            busy_wait_seconds: 120.0,
            textfile_dir: None,
            knobs: Knobs::default(),
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

/// Why a config was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}; fix the path given to --config", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type: toml's words, which name the
    /// key and show the line.
    #[error("config file {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error(
        "config file {origin}: unknown key `{key}` (etc/precisiond.toml, installed as \
         {DEFAULT_PATH}, documents every key)"
    )]
    UnknownKey { origin: String, key: String },
    #[error("config file {origin}: {invalid}")]
    Invalid { origin: String, invalid: Invalid },
    /// `precisiond watch`'s flags (named by the keys they override).
    #[error("command line: {0}")]
    Flags(Invalid),
}

/// A value out of its bounds, named by its key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// A measurement knob, bounded with `precisiond run`'s flag of the same
    /// meaning; an `[accuracy]` key is shown inside its table.
    #[error("{}{}", .0.knob.table().map(|t| format!("[{t}] ")).unwrap_or_default(), .0)]
    Knob(BadKnob),
    #[error("`retry_backoff_seconds` must be a positive number of seconds, got {0}")]
    RetryBackoff(f64),
    #[error("`busy_wait_seconds` must be 0 (no wait) or a positive number of seconds, got {0}")]
    BusyWait(f64),
    #[error("`max_attempts` must be at least 1 (1: never retry)")]
    NoAttempt,
    #[error("`max_model_bytes` must be above 0")]
    NoModelBytes,
    #[error(
        "`textfile_dir` must be an absolute path (node_exporter's \
         --collector.textfile.directory), got {0:?}"
    )]
    RelativeTextfileDir(PathBuf),
    // The settle time is how long a quiet file waits; beyond a minute a
    // user would think the daemon is not watching.
    #[error("`settle_ms` must be at most 60000 (one minute), got {0}")]
    SettleTooLong(u64),
}

impl From<BadKnob> for Invalid {
    fn from(bad: BadKnob) -> Invalid {
        Invalid::Knob(bad)
    }
}

impl Config {
    /// Parses a config file's text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        // The knobs and the daemon's keys share the top level: each struct
        // reads its own (so a wrong value is reported by toml with its key
        // and line), and a key neither knows is refused here.
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let knob_keys = serde_keys::<Knobs>();
        let own_keys = serde_keys::<Config>();
        if let Some(key) = table
            .keys()
            .find(|k| !knob_keys.contains(&k.as_str()) && !own_keys.contains(&k.as_str()))
        {
            return Err(ConfigError::UnknownKey {
                origin: origin.to_owned(),
                key: key.clone(),
            });
        }
        let knobs: Knobs = toml::from_str(text).map_err(syntax)?;
        let mut config: Config = toml::from_str(text).map_err(syntax)?;
        config.knobs = knobs;
        config.validate().map_err(|invalid| ConfigError::Invalid {
            origin: origin.to_owned(),
            invalid,
        })?;
        Ok(config)
    }

    /// The config from `path` (which must exist), or from [`DEFAULT_PATH`]
    /// when that exists, or the built-in defaults; then `overrides` applied.
    /// Returns the file actually read, for reloads and messages.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        };
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Config::parse(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        config.apply(overrides).map_err(ConfigError::Flags)?;
        Ok((config, path))
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), Invalid> {
        if !o.folders.is_empty() {
            self.folders = o.folders.clone();
        }
        if let Some(p) = &o.precisions {
            self.knobs.precisions = p.clone();
        }
        if let Some(s) = o.max_seconds {
            self.knobs.max_seconds = s;
        }
        if let Some(s) = o.worker_timeout_seconds {
            self.worker_timeout_seconds = s;
        }
        if let Some(ms) = o.settle_ms {
            self.settle_ms = ms;
        }
        self.validate()
    }

    fn validate(&self) -> Result<(), Invalid> {
        self.knobs.validate()?;
        Knob::WorkerTimeout.check(self.worker_timeout_seconds)?;
        if !(self.retry_backoff_seconds.is_finite() && self.retry_backoff_seconds > 0.0) {
            return Err(Invalid::RetryBackoff(self.retry_backoff_seconds));
        }
        if !(self.busy_wait_seconds.is_finite() && self.busy_wait_seconds >= 0.0) {
            return Err(Invalid::BusyWait(self.busy_wait_seconds));
        }
        if self.max_attempts == 0 {
            return Err(Invalid::NoAttempt);
        }
        if self.max_model_bytes == 0 {
            return Err(Invalid::NoModelBytes);
        }
        if let Some(dir) = &self.textfile_dir {
            if !dir.is_absolute() {
                return Err(Invalid::RelativeTextfileDir(dir.clone()));
            }
        }
        if self.settle_ms > 60_000 {
            return Err(Invalid::SettleTooLong(self.settle_ms));
        }
        Ok(())
    }

    /// The daemon's job for `model`: the knobs, the worker's time limit,
    /// and a drop folder that is not trusted (no symbolic links followed).
    /// The report, state folder and settings file are the defaults beside
    /// the model; the lists of precisions and devices are the knobs', used
    /// where the model's settings file names none.
    pub fn job_spec(&self, model: &Path) -> Result<JobSpec, BadKnob> {
        JobSpec::build(
            model.to_path_buf(),
            self.knobs.clone(),
            Given {
                timeout_seconds: Some(self.worker_timeout_seconds),
                untrusted_folder: true,
                ..Given::default()
            },
        )
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
        self.knobs.threads()
    }
}

/// The keys a struct's derived `Deserialize` reads (serde hands them to
/// `deserialize_struct`; this deserializer only records them).
fn serde_keys<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use serde::forward_to_deserialize_any;

    #[derive(Debug)]
    struct Recorded;
    impl std::fmt::Display for Recorded {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("keys recorded")
        }
    }
    impl std::error::Error for Recorded {}
    impl de::Error for Recorded {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Recorded
        }
    }

    struct Keys<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Keys<'_> {
        type Error = Recorded;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
            Err(Recorded)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Recorded> {
            *self.0 = fields;
            Err(Recorded)
        }
        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Keys(&mut keys));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use precisiond_core::flags::RunArgs;

    fn parse(text: &str, origin: &str) -> Result<Config, String> {
        Config::parse(text, origin).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("", "x.toml").unwrap(), Config::default());
    }

    #[test]
    fn documented_default_config_parses_and_matches_defaults() {
        let text = include_str!("../etc/precisiond.toml");
        let config = parse(text, "etc/precisiond.toml").unwrap();
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
        let e = parse("max_secnds = 2.0\n", "/etc/p.toml").unwrap_err();
        assert!(e.contains("/etc/p.toml"), "{e}");
        assert!(e.contains("max_secnds"), "{e}");
        let e = parse("[acuracy]\nmin_cosine = 0.9\n", "/etc/p.toml").unwrap_err();
        assert!(e.contains("acuracy"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        for (text, key) in [
            ("max_seconds = -1.0\n", "max_seconds"),
            ("max_seconds = \"fast\"\n", "max_seconds"),
            ("\n\nsettle_ms = 5\nmax_seconds = \"fast\"\n", "max_seconds"),
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
            ("trtexec = 3\n", "trtexec"),
            ("worker_timeout_seconds = 0\n", "worker_timeout_seconds"),
            ("build_timeout_seconds = 0\n", "build_timeout_seconds"),
        ] {
            let e = parse(text, "/etc/p.toml").unwrap_err();
            assert!(e.contains("/etc/p.toml") && e.contains(key), "{text}: {e}");
        }
        let e = parse("[accuracy]\nmin_cosine = 2.0\n", "f").unwrap_err();
        assert!(e.contains("[accuracy] `min_cosine`"), "{e}");
    }

    #[test]
    fn textfile_dir_is_off_unless_set() {
        assert_eq!(Config::default().textfile_dir, None);
        let c = parse(
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
        let mut c = parse("max_seconds = 2.0\nfolders = [\"/a\"]\n", "f").unwrap();
        c.apply(&Overrides {
            folders: vec!["/b".into()],
            max_seconds: Some(0.5),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c.folders, vec![PathBuf::from("/b")]);
        assert_eq!(c.knobs.max_seconds, 0.5);
        let e = c
            .apply(&Overrides {
                max_seconds: Some(0.0),
                ..Overrides::default()
            })
            .map_err(ConfigError::Flags)
            .unwrap_err()
            .to_string();
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
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/p.toml"), "{e}");
    }

    /// A config file that sets every knob away from its default.
    const EVERY_KNOB: &str = r#"
precisions = ["int8", "fp32"]
threads = 3
max_seconds = 0.5
target_ci_percent = 2.5
build_timeout_seconds = 90.0
probe = false
devices = ["cpu", "cuda:1"]
trtexec = "/opt/trt/bin/trtexec"
op_libraries = ["/opt/ops/libmine.so"]
profile = true
chart = false
busy_threshold = 0.5
contended_ci_percent = 12.0
contended_p90_ratio = 2.0
clock_drop_percent = 33.0
worker_timeout_seconds = 42.0

[accuracy]
min_cosine = 0.5
min_sqnr_db = 7.0
min_top1_agreement = 0.25
"#;

    #[test]
    fn every_config_knob_reaches_the_job_spec() {
        // The file names every knob there is: a knob added later fails here
        // until the file (and the expectation below) has it.
        let table: toml::Table = toml::from_str(EVERY_KNOB).unwrap();
        for key in serde_keys::<Knobs>() {
            assert!(table.contains_key(*key), "EVERY_KNOB lacks `{key}`");
        }
        let config = Config::parse(EVERY_KNOB, "f").unwrap();
        let spec = config.job_spec(Path::new("/d/m.pt")).unwrap();
        // A struct literal without `..`: every field written out.
        let expected = Knobs {
            precisions: vec![Precision::Int8, Precision::Fp32],
            threads: 3,
            max_seconds: 0.5,
            target_ci_percent: 2.5,
            build_timeout_seconds: 90.0,
            probe: false,
            devices: vec![
                precisiond_core::devices::DeviceRequest::Cpu,
                precisiond_core::devices::DeviceRequest::Cuda(1),
            ],
            trtexec: Some(PathBuf::from("/opt/trt/bin/trtexec")),
            op_libraries: vec![PathBuf::from("/opt/ops/libmine.so")],
            profile: true,
            chart: false,
            accuracy: precisiond_core::accuracy::AccuracyThresholds {
                min_cosine: 0.5,
                min_sqnr_db: 7.0,
                min_top1_agreement: 0.25,
            },
            busy_threshold: 0.5,
            contended_ci_percent: 12.0,
            contended_p90_ratio: 2.0,
            clock_drop_percent: 33.0,
        };
        assert_eq!(spec.knobs, expected);
        // ... and each is away from its default, so the check means something.
        let set = toml::Table::try_from(&expected).unwrap();
        let default = toml::Table::try_from(Knobs::default()).unwrap();
        for (key, value) in &set {
            assert_ne!(default.get(key), Some(value), "{key} is at its default");
        }
        assert_eq!(spec.timeout_seconds, Some(42.0));
        assert!(spec.untrusted_folder, "a drop folder is not trusted");
        // The lists are the ones used where the settings file names none.
        assert_eq!(spec.precisions, None);
        assert_eq!(spec.devices, None);
        assert_eq!(spec.report, PathBuf::from("/d/m.pt.report.toml"));
        assert_eq!(spec.state_dir, PathBuf::from("/d/.precisiond"));
    }

    #[derive(Parser)]
    struct RunCli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn the_config_file_and_the_flags_keep_to_the_same_bounds() {
        let values = [
            "0", "-1", "0.5", "1", "1.5", "25", "99.9", "100", "100.5", "150", "nan", "inf",
        ];
        let mut refused = 0;
        for knob in Knob::ALL {
            if matches!(knob, Knob::Precisions | Knob::Devices) {
                continue; // lists: the flags' parser refuses an empty one
            }
            for value in values {
                let text = match knob.table() {
                    Some(table) => format!("[{table}]\n{} = {value}\n", knob.key()),
                    None => format!("{} = {value}\n", knob.key()),
                };
                let from_file = match Config::parse(&text, "f") {
                    Ok(_) => None,
                    Err(ConfigError::Invalid {
                        invalid: Invalid::Knob(bad),
                        ..
                    }) => Some(bad.knob),
                    Err(e) => panic!("{text}: {e}"),
                };
                let flag_value = match value {
                    "nan" => "NaN",
                    v => v,
                };
                let flag = format!("{}={flag_value}", knob.flag());
                let argv = ["precisiond", "/d/m.pt", flag.as_str()];
                let from_flags = RunCli::try_parse_from(argv)
                    .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
                    .run
                    .spec()
                    .err()
                    .map(|bad| bad.0.knob);
                assert_eq!(from_file, from_flags, "{} = {value}", knob.key());
                refused += from_file.is_some() as usize;
            }
        }
        assert!(refused > 20, "the values tried must break most bounds");
        // The case that disagreed before: 0 is refused by both.
        assert!(Config::parse("contended_ci_percent = 0\n", "f").is_err());
    }
}
