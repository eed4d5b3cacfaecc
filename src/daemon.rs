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

mod decide;
// The status file (crate::output::status) makes sure of the state folder too.
mod folders;
mod systemd;

use crate::cli::PrecisionList;
use crate::config::{Config, Overrides};
use crate::output::status::{self, Current, Finished, Snapshot};
use crate::precision;
use crate::protocol::{self, exit};
use crate::queue::Queue;
use crate::report::{self, Report};
use crate::supervise::{self, Measured, WorkerEnd};
use crate::watch::{self, Change, Kind, Settler};
use clap::Args;
use decide::Decision;
use notify::RecommendedWatcher;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
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
    Progress(String),
    JobDone(Box<Result<Measured, String>>),
}

/// Runs the daemon until SIGTERM or SIGINT; returns the exit code.
pub fn run(args: WatchArgs) -> i32 {
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
    let mut daemon = Daemon {
        config,
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
    daemon.start_next_job();
    let line = daemon.flush_status();
    daemon.notifier.ready(&line);
    daemon.run(rx);
    exit::OK
}

fn fail(message: impl std::fmt::Display) -> i32 {
    eprintln!("precisiond: error: {message}");
    exit::ERROR
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
    config: Config,
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
}

impl Daemon {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            if self.stopping && self.job.is_none() {
                break;
            }
            let wake = [self.settler.next_due(), self.notifier.next_ping()]
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
            self.notifier.ping_if_due(now);
            self.start_next_job();
            self.flush_status();
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
                        crate::child::signal_name(sig),
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
            Msg::Progress(line) => match (protocol::parse_progress(&line), self.job.as_mut()) {
                (Some(step), Some(job)) => {
                    log::debug!("{:?}: {step}", job.current.path);
                    job.current.step = step.to_owned();
                    self.dirty = true;
                }
                _ => log::debug!("worker: {line}"),
            },
            Msg::JobDone(result) => self.job_done(*result),
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
                self.rescan_all();
            }
            Change::Written(path) if self.watched(&path) => match watch::kind(&path) {
                Kind::Model | Kind::Settings(_) => self.settler.written(path, now, settle),
                Kind::Report(_) | Kind::Ignored => {}
            },
            Change::Writing(path) => self.settler.writing(&path, now, settle),
            Change::Removed(path) if self.folders.contains(&path) => {
                log::error!(
                    "drop folder {path:?} was removed or moved away: nothing arrives there any \
                     more. Recreate it and restart or reload precisiond (systemctl reload precisiond)"
                );
                self.settler.forget_folder(&path);
                self.queue.remove_folder(&path);
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
                self.settler.forget(&path);
                if self.queue.remove(&path) {
                    log::info!("{path:?} was deleted while queued: dropped from the queue");
                    self.dirty = true;
                }
                if let Some(job) = self.job.as_mut().filter(|j| j.current.path == path) {
                    job.deleted = true;
                }
            }
            // A settings file gone changes what is measured; a report gone
            // asks for a new one. `decide` checks when its turn comes.
            Kind::Settings(model) | Kind::Report(model) => self.enqueue(model),
            Kind::Ignored => {}
        }
    }

    fn settled(&mut self, path: PathBuf) {
        match watch::kind(&path) {
            Kind::Model => self.enqueue(path),
            Kind::Settings(model) => self.enqueue(model),
            Kind::Report(_) | Kind::Ignored => {}
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
        let state = crate::fsutil::state_dir(&folder);
        crate::fsutil::ensure_state_dir(&state)?;
        // No worker runs yet (or the folder is new): leftovers are stale.
        folders::remove_stale_tmp(&folder, &state);
        if !self.folders.contains(&folder) {
            watch::add(&mut self.watcher, &folder)?;
            self.folders.push(folder.clone());
        }
        self.scan(&folder);
        Ok(())
    }

    /// Queues every model of `folder` whose report is missing or stale.
    fn scan(&mut self, folder: &Path) {
        let models = match folders::models(folder) {
            Ok(m) => m,
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        for model in models {
            if self.queue.contains(&model) {
                continue;
            }
            // Being measured under what may be the old config: looked at
            // again once its job ends.
            if self.job.as_ref().is_some_and(|j| j.current.path == model) {
                self.enqueue(model);
                continue;
            }
            match decide::decide(&model, &self.config) {
                Decision::Skip(why) => log::debug!("not measuring {model:?}: {why}"),
                Decision::Run(_) | Decision::Reject(_) => self.enqueue(model),
            }
        }
    }

    fn rescan_all(&mut self) {
        for folder in self.folders.clone() {
            self.scan(&folder);
        }
    }

    /// Starts the next queued model unless a job runs (one at a time: two
    /// timings at once would spoil each other) or the daemon stops.
    fn start_next_job(&mut self) {
        // `stop` is set by the signal thread before the main thread has seen
        // the signal: no job starts in between.
        while self.job.is_none() && !self.stopping && !self.stop.load(Ordering::SeqCst) {
            let Some(model) = self.queue.pop() else {
                return;
            };
            self.dirty = true;
            match decide::decide(&model, &self.config) {
                Decision::Skip(why) => log::info!("not measuring {model:?}: {why}"),
                Decision::Reject(report) => self.reject(&model, *report),
                Decision::Run(args) => self.spawn_job(model, *args),
            }
        }
    }

    fn reject(&mut self, model: &Path, report: Report) {
        let path = report::default_path(model);
        match crate::output::toml::write(&report, &path) {
            Ok(()) => {
                log::warn!("{model:?}: {}", report.error.as_deref().unwrap_or("failed"));
                self.remember(model, &report);
            }
            Err(e) => log::error!("cannot write report {path:?}: {e}"),
        }
    }

    fn spawn_job(&mut self, model: PathBuf, args: crate::cli::RunArgs) {
        log::info!("measuring {model:?}");
        let worker = self.worker.clone();
        let stop = self.stop.clone();
        let tx = self.tx.clone();
        let thread = std::thread::Builder::new()
            .name("job".into())
            .spawn(move || {
                let progress = tx.clone();
                let result = supervise::measure(&worker, &args, &stop, |line| {
                    let _ = progress.send(Msg::Progress(line.to_owned()));
                });
                let _ = tx.send(Msg::JobDone(Box::new(result)));
            });
        match thread {
            Ok(thread) => {
                self.job = Some(Job {
                    current: Current {
                        model: crate::fsutil::file_name(&model),
                        started: report::now(),
                        step: "starting".into(),
                        path: model,
                    },
                    deleted: false,
                    thread,
                })
            }
            Err(e) => log::error!("cannot start a job thread for {model:?}: {e}"),
        }
    }

    fn job_done(&mut self, result: Result<Measured, String>) {
        let Some(job) = self.job.take() else {
            return;
        };
        let _ = job.thread.join();
        self.dirty = true;
        let model = job.current.path;
        let end = match result {
            Ok(Measured {
                end,
                report: Some(report),
            }) => {
                match &report.error {
                    Some(error) => log::warn!("{model:?}: failed: {error}"),
                    None => log::info!("{model:?}: measured, report written"),
                }
                self.remember(&model, &report);
                end
            }
            Ok(Measured { end, report: None }) => {
                if end == WorkerEnd::Stopped || self.stopping {
                    log::info!(
                        "stopped measuring {model:?}; it is measured again at the next start"
                    );
                } else if job.deleted {
                    log::info!("{model:?} was deleted while being measured");
                } else {
                    log::warn!("{model:?}: the worker refused it (its message is above); no report written");
                }
                end
            }
            Err(e) => {
                log::error!("{model:?}: {e}");
                WorkerEnd::Exited(exit::ERROR)
            }
        };
        // A worker that did not end on its own may have died between
        // creating a temporary file and renaming it.
        if !supervise::worker_wrote_report(&end) {
            if let Some(folder) = model.parent() {
                folders::remove_stale_tmp(folder, &crate::fsutil::state_dir(folder));
            }
        }
    }

    fn remember(&mut self, model: &Path, report: &Report) {
        self.finished.push_front(Finished {
            model: crate::fsutil::file_name(model),
            status: report.status,
            finished: report.run.finished,
            error: report.error.clone(),
            path: model.to_path_buf(),
        });
        self.finished.truncate(status::KEEP_FINISHED);
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
        let remeasure = !config.measures_like(&self.config);
        if !self.env_decides_log {
            log::set_max_level(config.log_level.filter());
        }
        self.config = config;
        for gone in self.folders.clone().iter().filter(|f| !folders.contains(f)) {
            watch::remove(&mut self.watcher, gone);
            self.settler.forget_folder(gone);
            self.queue.remove_folder(gone);
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
        if remeasure {
            // Reports made under the old settings are stale now.
            self.rescan_all();
        }
        self.dirty = true;
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
    /// changed; returns the line.
    fn flush_status(&mut self) -> String {
        if !self.dirty {
            return String::new();
        }
        self.dirty = false;
        let snapshot = self.snapshot();
        let reports = self.folders.iter().map(|f| status::count_reports(f)).sum();
        let line = status::line(&snapshot, reports);
        for folder in &self.folders {
            if let Err(e) = status::write(folder, &snapshot, &line) {
                log::warn!("status file: {e}");
            }
        }
        self.notifier.status(&line);
        line
    }

    fn shut_down(&mut self) {
        for folder in &self.folders {
            folders::remove_stale_tmp(folder, &crate::fsutil::state_dir(folder));
        }
        self.dirty = true;
        self.flush_status();
        log::info!("stopped");
    }

    fn folder_list(&self) -> String {
        let names: Vec<String> = self.folders.iter().map(|f| format!("{f:?}")).collect();
        names.join(", ")
    }
}
