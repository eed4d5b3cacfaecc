//! `precisiond watch`: the daemon. Watches drop folders, measures each model
//! copied in (one at a time, in a worker process) and writes its report
//! beside it.
//!
//! One thread owns all state and waits on one channel for everything that
//! can happen: file events (from notify's thread), signals (from a
//! signal-hook thread), worker progress and the end of a job (from the job's
//! thread). Idle, it blocks on that channel with no timeout, so an idle
//! daemon uses no CPU; it wakes on time only for a file still settling or
//! for systemd's watchdog.
//!
//! This process never loads libtorch: measuring happens in
//! `precisiond-worker` (see `supervise`), so it stays small, and a crash in
//! libtorch ends only the worker.

mod check;
mod decide;
// The status file (crate::daemon::status_file) makes sure of the state folder too.
mod folders;
pub mod hashcache; // sha256 of model files, cached by size and mtime
mod metrics;
pub mod prometheus; // the node_exporter textfile (`textfile_dir`)
pub mod queue; // one job at a time, in arrival order
mod quiet;
mod retry;
pub mod status_file; // `.precisiond/status.toml` and systemd's STATUS= line
mod systemd;
pub mod watch; // inotify events to settled model files

use crate::config::{Config, Overrides};
use crate::daemon::hashcache::HashCache;
use crate::daemon::prometheus::DaemonFacts;
use crate::daemon::queue::Queue;
use crate::supervise::{self, Measured, WorkerEnd};
use clap::Args;
use decide::{Decision, Inputs};
use notify::RecommendedWatcher;
use precisiond_core::flags::PrecisionList;
use precisiond_core::precision;
use precisiond_core::protocol::Progress;
use precisiond_core::report::{self, Report};
use retry::Retries;
use status_file::{Current, Finished, Snapshot, Step};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use systemd::Notifier;
use watch::{Change, Kind, Settler};

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

/// A comma-separated list as one value (see `cli::PrecisionList`).
fn parse_precisions(list: &str) -> Result<PrecisionList, String> {
    precision::parse_list(list).map(PrecisionList)
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

/// Everything the daemon's thread waits for.
enum Msg {
    Fs(notify::Result<notify::Event>),
    Signal(i32),
    Checked(check::Checked),
    Progress(Progress),
    JobDone(Box<JobEnd>),
}

/// How a job's thread ended.
enum JobEnd {
    /// Its report turned out current (or it was deleted): no worker ran.
    Skipped(String),
    /// Not read; this failed report was written (or could not be).
    Rejected(Report, std::io::Result<()>),
    /// A worker ran.
    Measured(Result<Measured, String>),
}

/// The status files are rewritten at most this often: a burst of 500
/// models, or a worker's progress lines, must not cost an fsync each.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

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
    let mut daemon = Daemon {
        config: Arc::new(config),
        hashes,
        checker,
        retry_checks: HashSet::new(),
        retry_queued: HashSet::new(),
        retries: Retries::default(),
        scanned: HashSet::new(),
        disk_full: false,
        last_flush: None,
        config_arg: args.config,
        overrides,
        env_decides_log,
        worker,
        watcher,
        folders: Vec::new(),
        queue: Queue::new(),
        settler: Settler::default(),
        job: None,
        stop,
        stopping: false,
        tx,
        notifier: Notifier::from_env(),
        finished: VecDeque::new(),
        dirty: true,
        metrics: metrics::Metrics::default(),
        metrics_dirty: true,
        last_metrics: None,
        written_facts: None,
        failures_total: 0,
    };
    for folder in folders {
        if let Err(e) = daemon.add_folder(folder) {
            return fail(e);
        }
    }
    log::info!(
        "watching {}; queue: {}",
        daemon.folder_list(),
        daemon.queue.len()
    );
    // Ready once the folders are listed: what their models need is decided
    // on the checker's thread, and may take minutes of hashing.
    daemon.start_next_job();
    let line = daemon.flush_status(true);
    daemon.flush_metrics(true);
    daemon.notifier.ready(&line);
    daemon.run(rx);
    ExitCode::SUCCESS
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("precisiond: error: {message}");
    ExitCode::FAILURE
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

struct Job {
    current: Current,
    /// Deleted while being measured: its outcome is not worth a report.
    deleted: bool,
    thread: JoinHandle<()>,
}

struct Daemon {
    config: Arc<Config>,
    hashes: Arc<HashCache>,
    checker: Sender<check::Request>,
    /// Models whose next check measures a failure worth retrying again.
    retry_checks: HashSet<PathBuf>,
    /// Queued models whose job measures such a failure again.
    retry_queued: HashSet<PathBuf>,
    retries: Retries,
    /// Found by a scan and settling: their "not measuring" is logged quietly.
    scanned: HashSet<PathBuf>,
    /// The last report could not be written for a full disk.
    disk_full: bool,
    last_flush: Option<Instant>,
    /// `--config` as given: a reload reads the same file again.
    config_arg: Option<PathBuf>,
    overrides: Overrides,
    env_decides_log: bool,
    worker: PathBuf,
    watcher: RecommendedWatcher,
    folders: Vec<PathBuf>,
    queue: Queue,
    settler: Settler,
    job: Option<Job>,
    stop: Arc<AtomicBool>,
    stopping: bool,
    tx: Sender<Msg>,
    notifier: Notifier,
    finished: VecDeque<Finished>,
    /// The status files and line need rewriting.
    dirty: bool,
    /// The metrics textfile (`textfile_dir`).
    metrics: metrics::Metrics,
    /// A report changed: the metrics textfile needs rewriting.
    metrics_dirty: bool,
    last_metrics: Option<Instant>,
    /// What the metrics textfile last said of the daemon itself.
    written_facts: Option<DaemonFacts>,
    /// Workers that crashed or ran past their limit since the start.
    failures_total: u64,
}

/// A job's thread: decides again (the model may have changed while it was
/// queued), then writes a rejection or runs the worker.
fn job_thread(
    model: &Path,
    inputs: &Inputs,
    worker: &Path,
    attempt: u32,
    stop: &AtomicBool,
    progress: impl FnMut(Progress),
) -> JobEnd {
    match decide::decide(model, inputs) {
        Decision::Skip(why) => JobEnd::Skipped(why),
        Decision::Reject(report) => {
            let written = precisiond_core::output::write_report(
                &report,
                &report::default_path(model),
                inputs.config.chart,
            );
            JobEnd::Rejected(*report, written)
        }
        Decision::Run(mut args) => {
            let config = inputs.config;
            args.started_busy = quiet::wait_for_quiet(
                model,
                config.busy_threshold,
                Duration::from_secs_f64(config.busy_wait_seconds),
                stop,
            );
            if attempt > 1 {
                log::info!(
                    "measuring {model:?} (attempt {attempt} of {})",
                    inputs.config.max_attempts
                );
            } else {
                log::info!("measuring {model:?}");
            }
            JobEnd::Measured(supervise::measure(worker, &args, attempt, stop, progress))
        }
    }
}

impl Daemon {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            if self.stopping && self.job.is_none() {
                break;
            }
            let flush_due = self
                .dirty
                .then(|| self.last_flush.map(|t| t + STATUS_INTERVAL))
                .flatten();
            let metrics_due = self
                .metrics_pending()
                .then(|| self.last_metrics.map(|t| t + STATUS_INTERVAL))
                .flatten();
            let wake = [
                self.settler.next_due(),
                self.notifier.next_ping(),
                self.retries.next_due(),
                flush_due,
                metrics_due,
            ]
            .into_iter()
            .flatten()
            .min();
            // The daemon holds a sender itself, so the channel never closes.
            let msg = match wake {
                None => rx.recv().ok(),
                Some(at) => rx
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                    .ok(),
            };
            if let Some(msg) = msg {
                self.handle(msg);
            }
            let now = Instant::now();
            for path in self.settler.take_ready(now, self.config.settle()) {
                self.settled(path);
            }
            for model in self.retries.take_due(now) {
                self.retry_checks.insert(model.clone());
                self.check(model, false);
            }
            self.notifier.ping_if_due(now);
            self.start_next_job();
            self.flush_status(false);
            self.flush_metrics(false);
        }
        self.shut_down();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Fs(Ok(event)) => {
                for change in watch::changes(&event) {
                    self.file_changed(change);
                }
            }
            Msg::Fs(Err(e)) => log::warn!("file watching: {e}"),
            Msg::Signal(signal_hook::consts::SIGHUP) => self.reload(),
            Msg::Signal(sig) => {
                if !self.stopping {
                    log::info!(
                        "{} received: stopping{}",
                        precisiond_core::child::signal_name(sig),
                        if self.job.is_some() {
                            " the running worker and exiting"
                        } else {
                            ""
                        }
                    );
                    self.stopping = true;
                    self.notifier.stopping();
                    self.dirty = true;
                }
            }
            Msg::Progress(progress) => {
                if let Some(job) = self.job.as_mut() {
                    log::debug!("{:?}: {progress}", job.current.path);
                    job.current.step = Step::Measuring(progress);
                    self.dirty = true;
                }
            }
            Msg::Checked(checked) => self.checked(checked),
            Msg::JobDone(end) => self.job_done(*end),
        }
    }

    fn file_changed(&mut self, change: Change) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        let settle = self.config.settle();
        match change {
            Change::Rescan => {
                log::warn!("the kernel dropped file events (inotify queue overflow): scanning all folders again");
                self.rescan_all(false);
            }
            Change::Written(path) if self.watched(&path) => match watch::kind(&path) {
                Kind::Model => {
                    // A new version: its attempts start over.
                    self.retries.forget(&path);
                    self.settler.written(path, now, settle)
                }
                Kind::Settings(_) | Kind::Variant(_) => self.settler.written(path, now, settle),
                Kind::Report(_) => self.metrics_dirty = true,
                Kind::Ignored => {}
            },
            Change::Writing(path) => self.settler.writing(&path, now, settle),
            Change::Removed(path) if self.folders.contains(&path) => {
                log::error!(
                    "drop folder {path:?} was removed or moved away: nothing arrives there any \
                     more. Recreate it and restart or reload precisiond (systemctl reload precisiond)"
                );
                self.settler.forget_folder(&path);
                self.queue.remove_folder(&path);
                self.retries.forget_folder(&path);
                self.dirty = true;
            }
            Change::Removed(path) if self.watched(&path) => self.removed(path),
            Change::Written(_) | Change::Removed(_) => {}
        }
    }

    /// Directly inside one of the drop folders.
    fn watched(&self, path: &Path) -> bool {
        path.parent()
            .is_some_and(|p| self.folders.iter().any(|f| f == p))
    }

    fn removed(&mut self, path: PathBuf) {
        match watch::kind(&path) {
            Kind::Model => {
                self.metrics_dirty = true;
                self.settler.forget(&path);
                self.retries.forget(&path);
                self.scanned.remove(&path);
                self.retry_checks.remove(&path);
                if self.queue.remove(&path) {
                    log::info!("{path:?} was deleted while queued: dropped from the queue");
                    self.dirty = true;
                }
                if let Some(job) = self.job.as_mut().filter(|j| j.current.path == path) {
                    job.deleted = true;
                }
            }
            // A settings file gone changes what is measured; a report gone
            // asks for a new one.
            // A variant gone changes its family's report.
            Kind::Settings(model) | Kind::Report(model) | Kind::Variant(model) => {
                self.metrics_dirty = true;
                self.check(model, false)
            }
            Kind::Ignored => {}
        }
    }

    /// A file has settled: every path into the queue passes here (files
    /// found by a scan too), then through the checker.
    fn settled(&mut self, path: PathBuf) {
        match watch::kind(&path) {
            Kind::Model => {
                let quiet = self.scanned.remove(&path);
                self.check(path, quiet)
            }
            Kind::Settings(model) | Kind::Variant(model) => self.check(model, false),
            Kind::Report(_) | Kind::Ignored => {}
        }
    }

    /// Asks the checker whether `model` needs measuring; `quiet`: a model
    /// found by a scan, whose "not measuring" is no news.
    fn check(&mut self, model: PathBuf, quiet: bool) {
        let request = check::Request {
            retry_failures: self.retry_checks.remove(&model),
            model,
            config: self.config.clone(),
            quiet,
        };
        if self.checker.send(request).is_err() {
            log::error!("the checking thread is gone; models are no longer looked at");
        }
    }

    fn checked(&mut self, checked: check::Checked) {
        if self.stopping {
            return;
        }
        let model = checked.model;
        match checked.skip {
            Some(why) if checked.quiet => log::debug!("not measuring {model:?}: {why}"),
            Some(why) => log::info!("not measuring {model:?}: {why}"),
            None => {
                if checked.retry_failures {
                    self.retry_queued.insert(model.clone());
                }
                self.enqueue(model);
            }
        }
    }

    /// Queues `model` if it is a regular file; `decide` has the last word
    /// when its turn comes.
    fn enqueue(&mut self, model: PathBuf) {
        match std::fs::symlink_metadata(&model) {
            Ok(m) if m.file_type().is_symlink() => log::warn!(
                "skipping {model:?}: it is a symbolic link, and precisiond never follows links in \
                 a drop folder; copy the model itself into the folder"
            ),
            Ok(m) if m.is_file() && self.queue.push(model.clone()) => {
                log::info!("queued {model:?}");
                self.dirty = true;
            }
            _ => {}
        }
    }

    fn add_folder(&mut self, folder: PathBuf) -> Result<(), String> {
        let state = precisiond_core::fsutil::state_dir(&folder);
        precisiond_core::fsutil::ensure_state_dir(&state).map_err(|e| e.to_string())?;
        // No worker runs yet (or the folder is new): leftovers are stale.
        folders::remove_stale_tmp(&folder, &state);
        if !self.folders.contains(&folder) {
            watch::add(&mut self.watcher, &folder)?;
            self.folders.push(folder.clone());
        }
        self.scan(&folder, true);
        Ok(())
    }

    /// Hands every model of `folder` to the settle step, then to the
    /// checker, which queues those whose report is missing or stale (and,
    /// with `retry_failures`, those whose failure is worth retrying).
    /// Nothing is read here: this runs before READY=1 and between watchdog
    /// pings.
    fn scan(&mut self, folder: &Path, retry_failures: bool) {
        let models = match folders::models(folder) {
            Ok(m) => m,
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        let now = Instant::now();
        let settle = self.config.settle();
        for model in models {
            if self.queue.contains(&model) {
                continue;
            }
            if retry_failures {
                self.retry_checks.insert(model.clone());
            }
            self.scanned.insert(model.clone());
            self.settler.written(model, now, settle);
        }
    }

    fn rescan_all(&mut self, retry_failures: bool) {
        for folder in self.folders.clone() {
            self.scan(&folder, retry_failures);
        }
    }

    /// Starts the next queued model unless a job runs (one at a time: two
    /// timings at once would spoil each other) or the daemon stops.
    fn start_next_job(&mut self) {
        // `stop` is set by the signal thread before the main thread has seen
        // the signal: no job starts in between.
        if self.job.is_some() || self.stopping || self.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(model) = self.queue.pop() else {
            return;
        };
        self.dirty = true;
        let retry_failures = self.retry_queued.remove(&model);
        let attempt = self.retries.attempt(&model);
        let worker = self.worker.clone();
        let stop = self.stop.clone();
        let tx = self.tx.clone();
        let config = self.config.clone();
        let hashes = self.hashes.clone();
        let job_model = model.clone();
        let thread = std::thread::Builder::new()
            .name("job".into())
            .spawn(move || {
                let progress = tx.clone();
                let inputs = Inputs {
                    config: &config,
                    hashes: &hashes,
                    retry_failures,
                };
                let end = job_thread(&job_model, &inputs, &worker, attempt, &stop, |step| {
                    let _ = progress.send(Msg::Progress(step));
                });
                let _ = tx.send(Msg::JobDone(Box::new(end)));
            });
        match thread {
            Ok(thread) => {
                self.job = Some(Job {
                    current: Current {
                        model: precisiond_core::fsutil::file_name(&model),
                        started: report::now(),
                        step: Step::Starting,
                        path: model,
                    },
                    deleted: false,
                    thread,
                })
            }
            Err(e) => log::error!("cannot start a job thread for {model:?}: {e}"),
        }
    }

    fn job_done(&mut self, end: JobEnd) {
        let Some(job) = self.job.take() else {
            return;
        };
        let _ = job.thread.join();
        self.dirty = true;
        self.metrics_dirty = true;
        let model = job.current.path;
        let measured = match end {
            JobEnd::Skipped(why) => {
                log::info!("not measuring {model:?}: {why}");
                return;
            }
            JobEnd::Rejected(report, Ok(())) => {
                log::warn!("{model:?}: {}", report.error.as_deref().unwrap_or("failed"));
                self.remember(&model, &report);
                self.disk_full = false;
                return;
            }
            JobEnd::Rejected(_, Err(e)) if precisiond_core::fsutil::is_disk_full(&e) => {
                self.wait_for_space(&model);
                return;
            }
            JobEnd::Rejected(_, Err(e)) => {
                log::error!("cannot write the report of {model:?}: {e}");
                return;
            }
            JobEnd::Measured(Err(e)) => {
                log::error!("{model:?}: {e}");
                return;
            }
            JobEnd::Measured(Ok(measured)) => measured,
        };
        let end = measured.end;
        match measured.report {
            Some(report) => {
                self.disk_full = false;
                match &report.error {
                    Some(error) => log::warn!("{model:?}: failed: {error}"),
                    None => log::info!("{model:?}: measured, report written"),
                }
                self.remember(&model, &report);
                // Only the supervisor sets `attempts`, on the failed report
                // of a worker that crashed or ran past its limit.
                if report.attempts.is_some() {
                    self.failures_total += 1;
                }
                match report.attempts {
                    Some(attempt) if !job.deleted => self.failed_attempt(&model, attempt),
                    _ => self.retries.forget(&model),
                }
            }
            None if measured.disk_full && !self.stopping && !job.deleted => {
                self.wait_for_space(&model)
            }
            None => {
                if end == WorkerEnd::Stopped || self.stopping {
                    log::info!(
                        "stopped measuring {model:?}; it is measured again at the next start"
                    );
                } else if job.deleted {
                    log::info!("{model:?} was deleted while being measured");
                } else {
                    log::warn!("{model:?}: the worker refused it (its message is above); no report written");
                }
            }
        }
        // A worker that did not end on its own may have died between
        // creating a temporary file and renaming it.
        if !end.wrote_report() {
            if let Some(folder) = model.parent() {
                folders::remove_stale_tmp(folder, &precisiond_core::fsutil::state_dir(folder));
            }
        }
    }

    /// Attempt `attempt` of `model` failed in a way worth retrying (the
    /// worker crashed or ran past its limit): again after the back-off, up
    /// to `max_attempts` in a row.
    fn failed_attempt(&mut self, model: &Path, attempt: u32) {
        let max = self.config.max_attempts;
        if attempt >= max {
            log::warn!(
                "{model:?}: giving up after {attempt} attempts in a row; it is measured again when \
                 it or its settings change, at the next start or after a reload"
            );
            self.retries.forget(model);
            return;
        }
        let delay = self.config.retry_delay(attempt + 1);
        log::info!(
            "{model:?}: trying again in {} s (attempt {} of {max})",
            delay.as_secs_f64(),
            attempt + 1
        );
        self.retries.failed(model, attempt, Instant::now() + delay);
    }

    /// No report could be written for `model`: the disk is full. Tried
    /// again after the back-off, without counting an attempt.
    fn wait_for_space(&mut self, model: &Path) {
        let delay = self.config.retry_delay(2);
        log::warn!(
            "{model:?}: the disk is full, its report cannot be written; free some space. Trying \
             again in {} s",
            delay.as_secs_f64()
        );
        self.disk_full = true;
        self.retries.later(model, Instant::now() + delay);
    }

    fn remember(&mut self, model: &Path, report: &Report) {
        self.finished.push_front(Finished {
            model: precisiond_core::fsutil::file_name(model),
            status: report.status,
            finished: report.run.finished,
            error: report.error.clone(),
            path: model.to_path_buf(),
        });
        self.finished.truncate(status_file::KEEP_FINISHED);
        self.dirty = true;
    }

    /// SIGHUP: reads the config again. A config that does not load, or
    /// names a folder that cannot be watched, is rejected as a whole and the
    /// running one kept.
    fn reload(&mut self) {
        if self.stopping {
            return;
        }
        let loaded =
            Config::load(self.config_arg.as_deref(), &self.overrides).and_then(|(c, file)| {
                let folders = resolve_all(&c, &origin(file.as_deref()))?;
                Ok((c, folders, file))
            });
        let (config, folders, file) = match loaded {
            Ok(x) => x,
            Err(e) => {
                log::error!("configuration not reloaded, the previous one stays in force: {e}");
                return;
            }
        };
        if !self.env_decides_log {
            log::set_max_level(config.log_level.filter());
        }
        self.config = Arc::new(config);
        for gone in self.folders.clone().iter().filter(|f| !folders.contains(f)) {
            watch::remove(&mut self.watcher, gone);
            self.settler.forget_folder(gone);
            self.queue.remove_folder(gone);
            self.retries.forget_folder(gone);
            self.folders.retain(|f| f != gone);
            log::info!("no longer watching {gone:?}");
        }
        for folder in folders {
            if !self.folders.contains(&folder) {
                let added = folder.clone();
                match self.add_folder(folder) {
                    Ok(()) => log::info!("now watching {added:?}"),
                    Err(e) => log::error!("{e}"),
                }
            }
        }
        // Reports made under the old settings may be stale now, and a
        // reload is a fresh start for failures worth retrying.
        self.rescan_all(true);
        self.dirty = true;
        self.metrics_dirty = true;
        log::info!(
            "configuration reloaded from {}",
            file.map_or_else(|| "the built-in defaults".into(), |f| format!("{f:?}"))
        );
    }

    fn snapshot(&self) -> Snapshot<'_> {
        let state = match (self.stopping, &self.job) {
            (true, Some(_)) => "stopping",
            (true, None) => "stopped",
            (false, Some(_)) => "benchmarking",
            (false, None) if self.disk_full => "disk full",
            (false, None) => "idle",
        };
        Snapshot {
            state,
            queue: self.queue.iter().map(PathBuf::as_path).collect(),
            current: self.job.as_ref().map(|j| &j.current),
            finished: &self.finished,
        }
    }

    /// Rewrites the status files and systemd's STATUS= line when something
    /// changed, at most every STATUS_INTERVAL unless `now`; returns the line.
    fn flush_status(&mut self, now: bool) -> String {
        let recent = self
            .last_flush
            .is_some_and(|t| t.elapsed() < STATUS_INTERVAL);
        if !self.dirty || (recent && !now) {
            return String::new();
        }
        self.dirty = false;
        self.last_flush = Some(Instant::now());
        let snapshot = self.snapshot();
        let reports = self
            .folders
            .iter()
            .map(|f| status_file::count_reports(f))
            .sum();
        let line = status_file::line(&snapshot, reports);
        for folder in &self.folders {
            if let Err(e) = status_file::write(folder, &snapshot, &line) {
                log::warn!("status file: {e}");
            }
        }
        self.notifier.status(&line);
        line
    }

    fn daemon_facts(&self) -> DaemonFacts {
        DaemonFacts {
            queue_length: self.queue.len(),
            failures_total: self.failures_total,
            measuring: self.job.is_some(),
        }
    }

    /// The metrics textfile is on and out of date: a report changed, or
    /// the queue, the job or the failure count did.
    fn metrics_pending(&self) -> bool {
        self.config.textfile_dir.is_some()
            && (self.metrics_dirty || self.written_facts.as_ref() != Some(&self.daemon_facts()))
    }

    /// Rewrites the metrics textfile when it is out of date, at most every
    /// STATUS_INTERVAL unless `now`. Reports unchanged since the last time
    /// are not read again.
    fn flush_metrics(&mut self, now: bool) {
        let Some(dir) = self.config.textfile_dir.clone() else {
            return;
        };
        let recent = self
            .last_metrics
            .is_some_and(|t| t.elapsed() < STATUS_INTERVAL);
        if !self.metrics_pending() || (recent && !now) {
            return;
        }
        self.metrics_dirty = false;
        self.last_metrics = Some(Instant::now());
        let facts = self.daemon_facts();
        self.metrics.write(&dir, &self.folders, &facts);
        self.written_facts = Some(facts);
    }

    fn shut_down(&mut self) {
        for folder in &self.folders {
            folders::remove_stale_tmp(folder, &precisiond_core::fsutil::state_dir(folder));
        }
        self.dirty = true;
        self.flush_status(true);
        self.flush_metrics(true);
        self.hashes.save();
        log::info!("stopped");
    }

    fn folder_list(&self) -> String {
        let names: Vec<String> = self.folders.iter().map(|f| format!("{f:?}")).collect();
        names.join(", ")
    }
}
