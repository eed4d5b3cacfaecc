//! The daemon's I/O: the one channel its thread waits on, the real
//! `Edges` of the state machine (the worker's thread, the checker, the
//! watcher, the drop folders, the config file, the status and metrics
//! writers, systemd) and the loop that feeds the machine.
//!
//! One thread owns all state and waits on one channel for everything that
//! can happen: file events (from notify's thread), signals (from a
//! signal-hook thread), the checker's answers, worker progress and the end
//! of a job (from the job's thread). Idle, it blocks on that channel with
//! no timeout, so an idle daemon uses no CPU; it wakes on time only for
//! what the machine asks (a file still settling, a retry, a throttled
//! write) or for systemd's watchdog.

use super::check;
use super::decide::Inputs;
use super::folders;
use super::hashcache::HashCache;
use super::job::{self, JobEnd};
use super::machine::{Edges, Event, FileKind, JobOrder, Machine, Reloaded};
use super::metrics::Metrics;
use super::prometheus::DaemonFacts;
use super::status_file::{self, Snapshot};
use super::systemd::Notifier;
use super::watch::{self, Fingerprint};
use crate::config::{Config, Overrides};
use notify::RecommendedWatcher;
use precisiond_core::protocol::Progress;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Everything the daemon's thread waits for.
pub enum Msg {
    Fs(notify::Result<notify::Event>),
    Signal(i32),
    Checked(check::Checked),
    Progress(Progress),
    JobDone(Box<JobEnd>),
}

/// How the config is read again on SIGHUP.
pub struct ConfigSource {
    /// `--config` as given: a reload reads the same file again.
    pub arg: Option<PathBuf>,
    pub overrides: Overrides,
    /// `PRECISIOND_LOG` decides the log level, not the config.
    pub env_decides_log: bool,
}

/// The worker side: job threads and how they reach the daemon's thread.
pub struct Jobs {
    pub worker: PathBuf,
    pub hashes: Arc<HashCache>,
    /// Set by the signal thread: the job's thread stops its worker at once.
    pub stop: Arc<AtomicBool>,
    pub tx: Sender<Msg>,
    /// The running job's thread, joined when its end arrives.
    pub thread: Option<JoinHandle<()>>,
}

/// The real edges of the machine.
pub struct Io {
    pub jobs: Jobs,
    pub checker: Sender<check::Request>,
    pub watcher: RecommendedWatcher,
    pub notifier: Notifier,
    pub metrics: Metrics,
    pub config: ConfigSource,
}

impl Io {
    /// What a message means for the machine.
    fn events(&mut self, msg: Msg) -> Vec<Event> {
        match msg {
            Msg::Fs(Ok(event)) => watch::changes(&event)
                .into_iter()
                .map(Event::Changed)
                .collect(),
            Msg::Fs(Err(e)) => {
                log::warn!("file watching: {e}");
                Vec::new()
            }
            Msg::Signal(signal_hook::consts::SIGHUP) => vec![Event::Reload],
            Msg::Signal(sig) => vec![Event::Stop(sig)],
            Msg::Checked(checked) => vec![Event::Checked(checked)],
            Msg::Progress(progress) => vec![Event::Progress(progress)],
            Msg::JobDone(end) => {
                if let Some(thread) = self.jobs.thread.take() {
                    let _ = thread.join();
                }
                vec![Event::JobDone(end)]
            }
        }
    }
}

/// Feeds the machine until it is done (stopped, no job left), then shuts
/// it down.
pub fn serve(mut machine: Machine, mut io: Io, rx: Receiver<Msg>) {
    loop {
        if machine.done() {
            break;
        }
        let wake = [machine.next_wake(), io.notifier.next_ping()]
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
            let now = Instant::now();
            for event in io.events(msg) {
                machine.handle(event, now, &mut io);
            }
        }
        let now = Instant::now();
        io.notifier.ping_if_due(now);
        machine.tick(now, &mut io);
    }
    machine.shut_down(Instant::now(), &mut io);
    io.jobs.hashes.save();
    log::info!("stopped");
}

impl Edges for Io {
    fn stop_requested(&self) -> bool {
        self.jobs.stop.load(Ordering::SeqCst)
    }

    fn start_job(&mut self, order: JobOrder) -> std::io::Result<()> {
        let JobOrder {
            model,
            attempt,
            retry_failures,
            config,
        } = order;
        let worker = self.jobs.worker.clone();
        let stop = self.jobs.stop.clone();
        let tx = self.jobs.tx.clone();
        let hashes = self.jobs.hashes.clone();
        let thread = std::thread::Builder::new()
            .name("job".into())
            .spawn(move || {
                let progress = tx.clone();
                let inputs = Inputs {
                    config: &config,
                    hashes: &hashes,
                    retry_failures,
                };
                let end = job::job_thread(&model, &inputs, &worker, attempt, &stop, |step| {
                    let _ = progress.send(Msg::Progress(step));
                });
                let _ = tx.send(Msg::JobDone(Box::new(end)));
            })?;
        self.jobs.thread = Some(thread);
        Ok(())
    }

    fn check(&mut self, request: check::Request) {
        if self.checker.send(request).is_err() {
            log::error!("the checking thread is gone; models are no longer looked at");
        }
    }

    fn fingerprint(&self, path: &Path) -> Option<Fingerprint> {
        watch::fingerprint(path)
    }

    fn file_kind(&self, path: &Path) -> FileKind {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => FileKind::Symlink,
            Ok(m) if m.is_file() => FileKind::Regular,
            _ => FileKind::Other,
        }
    }

    fn models(&self, folder: &Path) -> Result<Vec<PathBuf>, String> {
        folders::models(folder)
    }

    fn prepare_folder(&mut self, folder: &Path) -> Result<(), String> {
        let state = precisiond_core::fsutil::state_dir(folder);
        precisiond_core::fsutil::ensure_state_dir(&state).map_err(|e| e.to_string())?;
        folders::remove_stale_tmp(folder, &state);
        Ok(())
    }

    fn remove_stale_tmp(&mut self, folder: &Path) {
        folders::remove_stale_tmp(folder, &precisiond_core::fsutil::state_dir(folder));
    }

    fn watch(&mut self, folder: &Path) -> Result<(), String> {
        watch::add(&mut self.watcher, folder)
    }

    fn unwatch(&mut self, folder: &Path) {
        watch::remove(&mut self.watcher, folder);
    }

    fn reload_config(&mut self) -> Result<Reloaded, String> {
        let (config, file) = Config::load(self.config.arg.as_deref(), &self.config.overrides)
            .map_err(|e| e.to_string())?;
        let folders = super::resolve_all(&config, &super::origin(file.as_deref()))?;
        if !self.config.env_decides_log {
            log::set_max_level(config.log_level.filter());
        }
        Ok(Reloaded {
            config,
            folders,
            file,
        })
    }

    fn write_status(&mut self, folders: &[PathBuf], snapshot: &Snapshot) -> String {
        let reports = folders.iter().map(|f| status_file::count_reports(f)).sum();
        let line = status_file::line(snapshot, reports);
        for folder in folders {
            if let Err(e) = status_file::write(folder, snapshot, &line) {
                log::warn!("status file: {e}");
            }
        }
        self.notifier.status(&line);
        line
    }

    fn write_metrics(&mut self, dir: &Path, folders: &[PathBuf], facts: &DaemonFacts) {
        self.metrics.write(dir, folders, facts);
    }

    fn stopping(&mut self) {
        self.notifier.stopping();
    }
}
