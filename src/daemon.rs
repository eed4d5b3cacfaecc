//! `precisiond watch`: the daemon. Watches drop folders, measures each model
//! copied in (one at a time, in a worker process) and writes its report
//! beside it.
//!
//! Two halves: the decisions (`machine`: queue, retries, back-off, reload,
//! what a worker's end means, throttled writes), plain code over plain data
//! with time passed in, unit-tested with a fake worker and a fake clock;
//! and the I/O at its edges (`edges`: the one channel the daemon's thread
//! waits on, the watcher, the job threads, files, systemd, signals). This
//! file sets them up.
//!
//! This process never loads libtorch: measuring happens in
//! `precisiond-worker` (see `supervise`), so it stays small, and a crash in
//! libtorch ends only the worker.

mod check; // the checking thread: does a model need measuring?
mod decide;
mod edges; // the real I/O and the loop that feeds the machine
           // The status file (crate::daemon::status_file) makes sure of the state folder too.
mod folders;
pub mod hashcache; // sha256 of model files, cached by size and mtime
mod job; // one job's thread: decide again, wait for quiet, run the worker
mod machine; // the decisions
mod metrics;
pub mod prometheus; // the node_exporter textfile (`textfile_dir`)
pub mod queue; // one job at a time, in arrival order
mod quiet;
mod retry;
pub mod status_file; // `.precisiond/status.toml` and systemd's STATUS= line
mod systemd;
mod throttle; // at most one rewrite of an output per interval
pub mod watch; // inotify events to settled model files

use crate::cli::fail;
use crate::config::{Config, Overrides};
use crate::daemon::hashcache::HashCache;
use crate::supervise;
use clap::Args;
use edges::{ConfigSource, Io, Jobs, Msg};
use machine::Machine;
use precisiond_core::flags::{parse_precisions, PrecisionList};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Instant;
use systemd::Notifier;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Drop folders to watch [default: `folders` from the config file].
    pub dirs: Vec<PathBuf>,
    /// Config file [default: /etc/precisiond/precisiond.toml, if it exists].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Precisions for models whose settings name none, comma separated.
    #[arg(long, value_parser = parse_precisions)]
    pub precisions: Option<PrecisionList>,
    /// Time budget per precision, warm-up included, in seconds.
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Kill a worker after this many seconds; its model gets a failed report.
    #[arg(long)]
    pub worker_timeout: Option<f64>,
    /// Take a written file once its size has not changed for this long.
    #[arg(long)]
    pub settle_ms: Option<u64>,
}

impl WatchArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            folders: self.dirs.clone(),
            precisions: self.precisions.clone().map(|l| l.0),
            max_seconds: self.max_seconds,
            worker_timeout_seconds: self.worker_timeout,
            settle_ms: self.settle_ms,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT; returns the exit code.
pub fn run(args: WatchArgs) -> ExitCode {
    let overrides = args.overrides();
    let (config, config_file) = match Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let env_decides_log = init_logging(&config);
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    // Signals first: a SIGTERM during a long first scan must not kill the
    // daemon halfway through writing a status file.
    if let Err(e) = forward_signals(tx.clone(), stop.clone()) {
        return fail(format!("cannot handle signals: {e}"));
    }
    let worker = match supervise::worker_exe() {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let origin = origin(config_file.as_deref());
    let folders = match resolve_all(&config, &origin) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    // Watching starts before the scan, so nothing copied in meanwhile is missed.
    let events = tx.clone();
    let watcher = match watch::start(&folders, move |e| {
        let _ = events.send(Msg::Fs(e));
    }) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let hashes = Arc::new(HashCache::new());
    let checker = match check::start(hashes.clone(), tx.clone(), Msg::Checked) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the checking thread: {e}")),
    };
    let mut io = Io {
        jobs: Jobs {
            worker,
            hashes,
            stop,
            tx,
            thread: None,
        },
        checker,
        watcher,
        notifier: Notifier::from_env(),
        metrics: metrics::Metrics::default(),
        config: ConfigSource {
            arg: args.config,
            overrides,
            env_decides_log,
        },
    };
    let mut machine = Machine::new(config);
    let line = match machine.start(folders, Instant::now(), &mut io) {
        Ok(line) => line,
        Err(e) => return fail(e),
    };
    io.notifier.ready(&line);
    edges::serve(machine, io, rx);
    ExitCode::SUCCESS
}

fn origin(config_file: Option<&Path>) -> String {
    match config_file {
        Some(p) => p.display().to_string(),
        None => format!(
            "{} (not present; using the built-in defaults)",
            crate::config::DEFAULT_PATH
        ),
    }
}

fn resolve_all(config: &Config, origin: &str) -> Result<Vec<PathBuf>, String> {
    if config.folders.is_empty() {
        return Err(format!(
            "no drop folder to watch: give one on the command line (precisiond watch DIR) or set \
             `folders` in {origin}"
        ));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for f in &config.folders {
        let path = folders::resolve(f, origin)?;
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Logs go to stderr (the journal under systemd). `PRECISIOND_LOG` wins over
/// the config's `log_level`; true when it does.
fn init_logging(config: &Config) -> bool {
    let mut builder = env_logger::Builder::new();
    builder.format_timestamp_millis();
    match std::env::var("PRECISIOND_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            builder.parse_filters(&spec).init();
            true
        }
        _ => {
            // Everything passes the logger; the global maximum, which a
            // reload can change, does the filtering.
            builder
                .filter_level(log::LevelFilter::Trace)
                .filter_module("notify", log::LevelFilter::Warn)
                .filter_module("mio", log::LevelFilter::Warn)
                .init();
            log::set_max_level(config.log_level.filter());
            false
        }
    }
}

fn forward_signals(tx: Sender<Msg>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig != SIGHUP {
                    // Set here, not by the main thread: the job thread
                    // watches this flag and stops the worker at once.
                    stop.store(true, Ordering::SeqCst);
                }
                if tx.send(Msg::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}
