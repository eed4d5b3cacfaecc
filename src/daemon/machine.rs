//! The daemon's decisions, as a state machine over plain data: which file
//! events matter, when a file has settled, what is queued, which job runs
//! next, when a failed one is tried again and when it is given up, what a
//! reload changes, what to do when a worker ends, and when the status
//! files and the metrics textfile are rewritten.
//!
//! Nothing here touches a process, a file, a thread or the clock: time
//! comes in as an `Instant` argument, and everything the decisions need
//! from the world (the worker, the checker, the drop folders, the config
//! file, the status and metrics writers, systemd) goes through the `Edges`
//! trait. The daemon's `edges::Io` implements it for real; the tests below
//! drive the machine with a fake worker and a fake clock, in the manner of
//! watchexec's supervisor job tests.

use super::check::{self, Look};
use super::job::JobEnd;
use super::prometheus::DaemonFacts;
use super::queue::Queue;
use super::retry::Retries;
use super::status_file::{self, Current, Finished, Snapshot, Step};
use super::throttle::Throttle;
use super::watch::{self, Change, Fingerprint, Kind, Settler};
use crate::config::Config;
use crate::supervise::WorkerEnd;
use precisiond_core::protocol::Progress;
use precisiond_core::report::{self, Report};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The status files and the metrics textfile are rewritten at most this
/// often: a burst of 500 models, or a worker's progress lines, must not
/// cost an fsync each.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// What can happen to the daemon.
#[derive(Debug)]
pub enum Event {
    /// A file event in (or of) a drop folder.
    Changed(Change),
    /// SIGHUP: read the config again.
    Reload,
    /// SIGTERM or SIGINT (the signal's number).
    Stop(i32),
    /// The checker's answer.
    Checked(check::Checked),
    /// The running worker's progress.
    Progress(Progress),
    /// The running job ended.
    JobDone(Box<JobEnd>),
}

/// A job for the worker.
#[derive(Debug, Clone)]
pub struct JobOrder {
    pub model: PathBuf,
    /// The how-manieth try in a row this is (1 for a first one).
    pub attempt: u32,
    /// Measure again a failure worth retrying (`decide`).
    pub retry_failures: bool,
    pub config: Arc<Config>,
}

/// What a path in a drop folder is, without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Symlink,
    /// Anything else, or nothing there.
    Other,
}

/// A config read again, with the drop folders it names.
#[derive(Debug)]
pub struct Reloaded {
    pub config: Config,
    pub folders: Vec<PathBuf>,
    /// The file it came from; None: the built-in defaults.
    pub file: Option<PathBuf>,
}

/// Everything the decisions need from the world.
pub trait Edges {
    // The worker.
    /// A signal asked the daemon to stop (seen before its event arrives:
    /// no job starts in between).
    fn stop_requested(&self) -> bool;
    /// Starts measuring; its lines and its end come back as events.
    fn start_job(&mut self, order: JobOrder) -> std::io::Result<()>;

    // The checker (hashing runs off the main thread).
    /// Asks whether a model needs measuring; the answer comes back as
    /// `Event::Checked`.
    fn check(&mut self, request: check::Request);

    // The drop folders.
    fn fingerprint(&self, path: &Path) -> Option<Fingerprint>;
    fn file_kind(&self, path: &Path) -> FileKind;
    /// The models in a folder, oldest first.
    fn models(&self, folder: &Path) -> Result<Vec<PathBuf>, String>;
    /// Makes sure of the folder's state folder and removes temporary
    /// files of ours left there (no worker runs in it).
    fn prepare_folder(&mut self, folder: &Path) -> Result<(), String>;
    /// Removes temporary files a stopped or dead worker may have left.
    fn remove_stale_tmp(&mut self, folder: &Path);
    fn watch(&mut self, folder: &Path) -> Result<(), String>;
    fn unwatch(&mut self, folder: &Path);

    // The config file.
    /// Reads the config again (and applies its log level).
    fn reload_config(&mut self) -> Result<Reloaded, String>;

    // What the daemon tells.
    /// Writes the status file of every folder and systemd's STATUS=;
    /// returns the status line.
    fn write_status(&mut self, folders: &[PathBuf], snapshot: &Snapshot) -> String;
    fn write_metrics(&mut self, dir: &Path, folders: &[PathBuf], facts: &DaemonFacts);
    /// Tells systemd the daemon stops.
    fn stopping(&mut self);
}

/// The job being measured.
struct Running {
    current: Current,
    /// Deleted while being measured: its outcome is not worth a report.
    deleted: bool,
}

/// What the daemon has done so far, for the status files and metrics.
#[derive(Default)]
struct History {
    /// Most recent first, at most `status_file::KEEP_FINISHED`.
    finished: VecDeque<Finished>,
    /// Workers that crashed or ran past their limit since the start.
    failures_total: u64,
    /// The last report could not be written for a full disk.
    disk_full: bool,
}

/// The two throttled outputs.
struct Writes {
    status: Throttle,
    /// The metrics textfile (`textfile_dir`); marked when a report changed.
    metrics: Throttle,
    /// What the metrics textfile last said of the daemon itself: it is
    /// out of date too when those facts change.
    written_facts: Option<DaemonFacts>,
}

pub struct Machine {
    config: Arc<Config>,
    folders: Vec<PathBuf>,
    /// Written files waiting to settle, each with why it is looked at.
    settler: Settler<Look>,
    queue: Queue,
    retries: Retries,
    job: Option<Running>,
    stopping: bool,
    history: History,
    writes: Writes,
}

impl Machine {
    pub fn new(config: Config) -> Machine {
        Machine {
            config: Arc::new(config),
            folders: Vec::new(),
            settler: Settler::default(),
            queue: Queue::new(),
            retries: Retries::default(),
            job: None,
            stopping: false,
            history: History::default(),
            writes: Writes {
                status: Throttle::new(WRITE_INTERVAL),
                metrics: Throttle::new(WRITE_INTERVAL),
                written_facts: None,
            },
        }
    }

    /// Start-up: takes on `folders` and scans them, starts a job if one is
    /// queued and writes the status files and metrics. Returns the status
    /// line (for READY=1); Err: a folder cannot be used.
    pub fn start(
        &mut self,
        folders: Vec<PathBuf>,
        now: Instant,
        io: &mut impl Edges,
    ) -> Result<String, String> {
        for folder in folders {
            self.add_folder(folder, now, io)?;
        }
        log::info!(
            "watching {}; queue: {}",
            self.folder_list(),
            self.queue.len()
        );
        // Ready once the folders are listed: what their models need is
        // decided on the checker's thread, and may take minutes of hashing.
        self.start_next_job(io);
        let line = self.flush_status(now, true, io);
        self.flush_metrics(now, true, io);
        Ok(line)
    }

    /// Stopping and no job left: the daemon may exit.
    pub fn done(&self) -> bool {
        self.stopping && self.job.is_none()
    }

    /// When the daemon must wake without an event: a file to settle, a
    /// retry, a throttled write. None: it sleeps until an event comes.
    pub fn next_wake(&self) -> Option<Instant> {
        let metrics = self
            .config
            .textfile_dir
            .is_some()
            .then(|| self.writes.metrics.next_due())
            .flatten();
        [
            self.settler.next_due(),
            self.retries.next_due(),
            self.writes.status.next_due(),
            metrics,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle(&mut self, event: Event, now: Instant, io: &mut impl Edges) {
        match event {
            Event::Changed(change) => self.file_changed(change, now, io),
            Event::Reload => self.reload(now, io),
            Event::Stop(sig) => {
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
                    io.stopping();
                    self.writes.status.mark();
                }
            }
            Event::Progress(progress) => {
                if let Some(job) = self.job.as_mut() {
                    log::debug!("{:?}: {progress}", job.current.path);
                    job.current.step = Step::Measuring(progress);
                    self.writes.status.mark();
                }
            }
            Event::Checked(checked) => self.checked(checked, io),
            Event::JobDone(end) => self.job_done(*end, now, io),
        }
    }

    /// What time alone decides, after every event and wake-up: settled
    /// files go to the checker, due retries too, the next job starts, and
    /// the outputs are written if due.
    pub fn tick(&mut self, now: Instant, io: &mut impl Edges) {
        let settle = self.config.settle();
        for (path, look) in self.settler.take_ready(now, settle, |p| io.fingerprint(p)) {
            self.settled(path, look, io);
        }
        for model in self.retries.take_due(now) {
            let look = Look {
                retry_failures: true,
                quiet: false,
            };
            self.check(model, look, io);
        }
        self.start_next_job(io);
        self.flush_status(now, false, io);
        self.flush_metrics(now, false, io);
    }

    /// The last words: no temporary file left, the outputs say "stopped".
    pub fn shut_down(&mut self, now: Instant, io: &mut impl Edges) {
        for folder in &self.folders {
            io.remove_stale_tmp(folder);
        }
        self.writes.status.mark();
        self.flush_status(now, true, io);
        self.flush_metrics(now, true, io);
    }

    fn file_changed(&mut self, change: Change, now: Instant, io: &mut impl Edges) {
        if self.stopping {
            return;
        }
        let settle = self.config.settle();
        match change {
            Change::Rescan => {
                log::warn!("the kernel dropped file events (inotify queue overflow): scanning all folders again");
                self.rescan_all(false, now, io);
            }
            Change::Written(path) if self.watched(&path) => match watch::kind(&path) {
                Kind::Model => {
                    // A new version: its attempts start over.
                    self.retries.forget(&path);
                    let seen = io.fingerprint(&path);
                    self.settler
                        .written(path, seen, Look::default(), now, settle)
                }
                Kind::Settings(_) | Kind::Variant(_) => {
                    let seen = io.fingerprint(&path);
                    self.settler
                        .written(path, seen, Look::default(), now, settle)
                }
                Kind::Report(_) => self.writes.metrics.mark(),
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
                self.writes.status.mark();
            }
            Change::Removed(path) if self.watched(&path) => self.removed(path, io),
            Change::Written(_) | Change::Removed(_) => {}
        }
    }

    /// Directly inside one of the drop folders.
    fn watched(&self, path: &Path) -> bool {
        path.parent()
            .is_some_and(|p| self.folders.iter().any(|f| f == p))
    }

    fn removed(&mut self, path: PathBuf, io: &mut impl Edges) {
        match watch::kind(&path) {
            Kind::Model => {
                self.writes.metrics.mark();
                self.settler.forget(&path);
                self.retries.forget(&path);
                if self.queue.remove(&path) {
                    log::info!("{path:?} was deleted while queued: dropped from the queue");
                    self.writes.status.mark();
                }
                if let Some(job) = self.job.as_mut().filter(|j| j.current.path == path) {
                    job.deleted = true;
                }
            }
            // A settings file gone changes what is measured; a report gone
            // asks for a new one.
            // A variant gone changes its family's report.
            Kind::Settings(model) | Kind::Report(model) | Kind::Variant(model) => {
                self.writes.metrics.mark();
                self.check(model, Look::default(), io)
            }
            Kind::Ignored => {}
        }
    }

    /// A file has settled: every path into the queue passes here (files
    /// found by a scan too), then through the checker.
    fn settled(&mut self, path: PathBuf, look: Look, io: &mut impl Edges) {
        match watch::kind(&path) {
            Kind::Model => self.check(path, look, io),
            Kind::Settings(model) | Kind::Variant(model) => self.check(model, Look::default(), io),
            Kind::Report(_) | Kind::Ignored => {}
        }
    }

    /// Asks the checker whether `model` needs measuring.
    fn check(&mut self, model: PathBuf, look: Look, io: &mut impl Edges) {
        io.check(check::Request {
            model,
            config: self.config.clone(),
            look,
        });
    }

    fn checked(&mut self, checked: check::Checked, io: &mut impl Edges) {
        if self.stopping {
            return;
        }
        let model = checked.model;
        match checked.skip {
            Some(why) if checked.look.quiet => log::debug!("not measuring {model:?}: {why}"),
            Some(why) => log::info!("not measuring {model:?}: {why}"),
            None => self.enqueue(model, checked.look.retry_failures, io),
        }
    }

    /// Queues `model` if it is a regular file; `decide` has the last word
    /// when its turn comes.
    fn enqueue(&mut self, model: PathBuf, retry_failures: bool, io: &mut impl Edges) {
        match io.file_kind(&model) {
            FileKind::Symlink => log::warn!(
                "skipping {model:?}: it is a symbolic link, and precisiond never follows links in \
                 a drop folder; copy the model itself into the folder"
            ),
            FileKind::Regular if self.queue.push(model.clone(), retry_failures) => {
                log::info!("queued {model:?}");
                self.writes.status.mark();
            }
            FileKind::Regular | FileKind::Other => {}
        }
    }

    fn add_folder(
        &mut self,
        folder: PathBuf,
        now: Instant,
        io: &mut impl Edges,
    ) -> Result<(), String> {
        // No worker runs yet (or the folder is new): leftovers are stale.
        io.prepare_folder(&folder)?;
        if !self.folders.contains(&folder) {
            io.watch(&folder)?;
            self.folders.push(folder.clone());
        }
        self.scan(&folder, true, now, io);
        Ok(())
    }

    /// Hands every model of `folder` to the settle step, then to the
    /// checker, which queues those whose report is missing or stale (and,
    /// with `retry_failures`, those whose failure is worth retrying).
    /// Nothing is read here: this runs before READY=1 and between watchdog
    /// pings.
    fn scan(&mut self, folder: &Path, retry_failures: bool, now: Instant, io: &mut impl Edges) {
        let models = match io.models(folder) {
            Ok(m) => m,
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        let settle = self.config.settle();
        let look = Look {
            retry_failures,
            quiet: true,
        };
        for model in models {
            if self.queue.contains(&model) {
                continue;
            }
            let seen = io.fingerprint(&model);
            self.settler.written(model, seen, look, now, settle);
        }
    }

    fn rescan_all(&mut self, retry_failures: bool, now: Instant, io: &mut impl Edges) {
        for folder in self.folders.clone() {
            self.scan(&folder, retry_failures, now, io);
        }
    }

    /// Starts the next queued model unless a job runs (one at a time: two
    /// timings at once would spoil each other) or the daemon stops.
    fn start_next_job(&mut self, io: &mut impl Edges) {
        if self.job.is_some() || self.stopping || io.stop_requested() {
            return;
        }
        let Some((model, retry_failures)) = self.queue.pop() else {
            return;
        };
        self.writes.status.mark();
        let order = JobOrder {
            model: model.clone(),
            attempt: self.retries.attempt(&model),
            retry_failures,
            config: self.config.clone(),
        };
        match io.start_job(order) {
            Ok(()) => {
                self.job = Some(Running {
                    current: Current {
                        model: precisiond_core::fsutil::file_name(&model),
                        started: report::now(),
                        step: Step::Starting,
                        path: model,
                    },
                    deleted: false,
                })
            }
            Err(e) => log::error!("cannot start a job thread for {model:?}: {e}"),
        }
    }

    fn job_done(&mut self, end: JobEnd, now: Instant, io: &mut impl Edges) {
        let Some(job) = self.job.take() else {
            return;
        };
        self.writes.status.mark();
        self.writes.metrics.mark();
        let model = job.current.path;
        let measured = match end {
            JobEnd::Skipped(why) => {
                log::info!("not measuring {model:?}: {why}");
                return;
            }
            JobEnd::Rejected(report, Ok(())) => {
                log::warn!("{model:?}: {}", report.error.as_deref().unwrap_or("failed"));
                self.remember(&model, &report);
                self.history.disk_full = false;
                return;
            }
            JobEnd::Rejected(_, Err(e)) if precisiond_core::fsutil::is_disk_full(&e) => {
                self.wait_for_space(&model, now);
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
                self.history.disk_full = false;
                match &report.error {
                    Some(error) => log::warn!("{model:?}: failed: {error}"),
                    None => log::info!("{model:?}: measured, report written"),
                }
                self.remember(&model, &report);
                // Only the supervisor sets `attempts`, on the failed report
                // of a worker that crashed or ran past its limit.
                if report.attempts.is_some() {
                    self.history.failures_total += 1;
                }
                match report.attempts {
                    Some(attempt) if !job.deleted => self.failed_attempt(&model, attempt, now),
                    _ => self.retries.forget(&model),
                }
            }
            None if measured.disk_full && !self.stopping && !job.deleted => {
                self.wait_for_space(&model, now)
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
                io.remove_stale_tmp(folder);
            }
        }
    }

    /// Attempt `attempt` of `model` failed in a way worth retrying (the
    /// worker crashed or ran past its limit): again after the back-off, up
    /// to `max_attempts` in a row.
    fn failed_attempt(&mut self, model: &Path, attempt: u32, now: Instant) {
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
        self.retries.failed(model, attempt, now + delay);
    }

    /// No report could be written for `model`: the disk is full. Tried
    /// again after the back-off, without counting an attempt.
    fn wait_for_space(&mut self, model: &Path, now: Instant) {
        let delay = self.config.retry_delay(2);
        log::warn!(
            "{model:?}: the disk is full, its report cannot be written; free some space. Trying \
             again in {} s",
            delay.as_secs_f64()
        );
        self.history.disk_full = true;
        self.retries.later(model, now + delay);
    }

    fn remember(&mut self, model: &Path, report: &Report) {
        self.history.finished.push_front(Finished {
            model: precisiond_core::fsutil::file_name(model),
            status: report.status,
            finished: report.run.finished,
            error: report.error.clone(),
            path: model.to_path_buf(),
        });
        self.history.finished.truncate(status_file::KEEP_FINISHED);
        self.writes.status.mark();
    }

    /// SIGHUP: reads the config again. A config that does not load, or
    /// names a folder that cannot be watched, is rejected as a whole and the
    /// running one kept.
    fn reload(&mut self, now: Instant, io: &mut impl Edges) {
        if self.stopping {
            return;
        }
        let Reloaded {
            config,
            folders,
            file,
        } = match io.reload_config() {
            Ok(x) => x,
            Err(e) => {
                log::error!("configuration not reloaded, the previous one stays in force: {e}");
                return;
            }
        };
        self.config = Arc::new(config);
        for gone in self.folders.clone().iter().filter(|f| !folders.contains(f)) {
            io.unwatch(gone);
            self.settler.forget_folder(gone);
            self.queue.remove_folder(gone);
            self.retries.forget_folder(gone);
            self.folders.retain(|f| f != gone);
            log::info!("no longer watching {gone:?}");
        }
        for folder in folders {
            if !self.folders.contains(&folder) {
                let added = folder.clone();
                match self.add_folder(folder, now, io) {
                    Ok(()) => log::info!("now watching {added:?}"),
                    Err(e) => log::error!("{e}"),
                }
            }
        }
        // Reports made under the old settings may be stale now, and a
        // reload is a fresh start for failures worth retrying.
        self.rescan_all(true, now, io);
        self.writes.status.mark();
        self.writes.metrics.mark();
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
            (false, None) if self.history.disk_full => "disk full",
            (false, None) => "idle",
        };
        Snapshot {
            state,
            queue: self.queue.iter().map(PathBuf::as_path).collect(),
            current: self.job.as_ref().map(|j| &j.current),
            finished: &self.history.finished,
        }
    }

    /// Rewrites the status files and systemd's STATUS= line when something
    /// changed, at most every WRITE_INTERVAL unless `force`; returns the
    /// line (empty when nothing was written).
    fn flush_status(&mut self, now: Instant, force: bool, io: &mut impl Edges) -> String {
        if !self.writes.status.take(now, force) {
            return String::new();
        }
        let snapshot = self.snapshot();
        io.write_status(&self.folders, &snapshot)
    }

    fn daemon_facts(&self) -> DaemonFacts {
        DaemonFacts {
            queue_length: self.queue.len(),
            failures_total: self.history.failures_total,
            measuring: self.job.is_some(),
        }
    }

    /// Rewrites the metrics textfile when it is on and out of date (a
    /// report changed, or the queue, the job or the failure count did), at
    /// most every WRITE_INTERVAL unless `force`.
    fn flush_metrics(&mut self, now: Instant, force: bool, io: &mut impl Edges) {
        let Some(dir) = self.config.textfile_dir.clone() else {
            return;
        };
        let facts = self.daemon_facts();
        if self.writes.written_facts.as_ref() != Some(&facts) {
            self.writes.metrics.mark();
        }
        if !self.writes.metrics.take(now, force) {
            return;
        }
        io.write_metrics(&dir, &self.folders, &facts);
        self.writes.written_facts = Some(facts);
    }

    fn folder_list(&self) -> String {
        let names: Vec<String> = self.folders.iter().map(|f| format!("{f:?}")).collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
