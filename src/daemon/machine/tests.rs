//! The decisions driven without processes, files or sleeping: a fake
//! world (`Fake`) records what the machine asks of it, and time is an
//! `Instant` moved forward by hand.

use super::*;
use crate::supervise::Measured;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::protocol::WorkerExit;
use precisiond_core::report::Status;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The world as the machine sees it, in memory.
#[derive(Default)]
struct Fake {
    /// Regular files, with their fingerprints.
    files: BTreeMap<PathBuf, Fingerprint>,
    links: Vec<PathBuf>,
    /// The signal thread's flag.
    stop: bool,
    /// Jobs the fake worker was given.
    jobs: Vec<JobOrder>,
    /// Checks asked for and not yet answered.
    checks: Vec<check::Request>,
    /// Each status write: the state and the line.
    statuses: Vec<(String, String)>,
    metrics: Vec<DaemonFacts>,
    stale_tmp_removed: Vec<PathBuf>,
    told_stopping: bool,
    watched: Vec<PathBuf>,
    /// What the next reload reads.
    reload: Option<Result<Reloaded, String>>,
}

impl Edges for Fake {
    fn stop_requested(&self) -> bool {
        self.stop
    }

    fn start_job(&mut self, order: JobOrder) -> std::io::Result<()> {
        self.jobs.push(order);
        Ok(())
    }

    fn check(&mut self, request: check::Request) {
        self.checks.push(request);
    }

    fn fingerprint(&self, path: &Path) -> Option<Fingerprint> {
        self.files.get(path).copied()
    }

    fn file_kind(&self, path: &Path) -> FileKind {
        if self.links.iter().any(|l| l == path) {
            FileKind::Symlink
        } else if self.files.contains_key(path) {
            FileKind::Regular
        } else {
            FileKind::Other
        }
    }

    fn models(&self, folder: &Path) -> Result<Vec<PathBuf>, String> {
        Ok(self
            .files
            .keys()
            .filter(|p| p.parent() == Some(folder) && watch::kind(p) == Kind::Model)
            .cloned()
            .collect())
    }

    fn prepare_folder(&mut self, _folder: &Path) -> Result<(), String> {
        Ok(())
    }

    fn remove_stale_tmp(&mut self, folder: &Path) {
        self.stale_tmp_removed.push(folder.to_path_buf());
    }

    fn watch(&mut self, folder: &Path) -> Result<(), String> {
        self.watched.push(folder.to_path_buf());
        Ok(())
    }

    fn unwatch(&mut self, folder: &Path) {
        self.watched.retain(|f| f != folder);
    }

    fn reload_config(&mut self) -> Result<Reloaded, String> {
        self.reload.take().expect("a reload the test prepared")
    }

    fn write_status(&mut self, _folders: &[PathBuf], snapshot: &Snapshot) -> String {
        let line = status_file::line(snapshot, 0);
        self.statuses
            .push((snapshot.state.to_owned(), line.clone()));
        line
    }

    fn write_metrics(&mut self, _dir: &Path, _folders: &[PathBuf], facts: &DaemonFacts) {
        self.metrics.push(facts.clone());
    }

    fn stopping(&mut self) {
        self.told_stopping = true;
    }
}

/// A config from the keys of the config file.
fn config(toml: &str) -> Config {
    toml::from_str(toml).unwrap()
}

const SETTLE: Duration = Duration::from_millis(100);
const BACKOFF: Duration = Duration::from_secs(60);

fn base_config() -> &'static str {
    "settle_ms = 100\nretry_backoff_seconds = 60.0\nmax_attempts = 3\n"
}

/// The machine, its fake world and a fake clock, watching the folder /d.
struct Rig {
    m: Machine,
    io: Fake,
    now: Instant,
}

fn folder() -> PathBuf {
    PathBuf::from("/d")
}

impl Rig {
    fn new(toml: &str) -> Rig {
        Rig::with_files(toml, &[])
    }

    /// A daemon started with these models already in /d.
    fn with_files(toml: &str, names: &[&str]) -> Rig {
        let mut io = Fake::default();
        for name in names {
            io.files
                .insert(folder().join(name), (1, SystemTime::UNIX_EPOCH));
        }
        let now = Instant::now();
        let mut m = Machine::new(config(toml));
        m.start(vec![folder()], now, &mut io).unwrap();
        Rig { m, io, now }
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
        self.m.tick(self.now, &mut self.io);
    }

    fn event(&mut self, event: Event) {
        self.m.handle(event, self.now, &mut self.io);
        self.m.tick(self.now, &mut self.io);
    }

    /// A file copied into /d (or written again), not yet settled.
    fn write(&mut self, name: &str, bytes: u64) -> PathBuf {
        let path = folder().join(name);
        self.io
            .files
            .insert(path.clone(), (bytes, SystemTime::UNIX_EPOCH));
        self.event(Event::Changed(Change::Written(path.clone())));
        path
    }

    fn delete(&mut self, path: &Path) {
        self.io.files.remove(path);
        self.event(Event::Changed(Change::Removed(path.to_path_buf())));
    }

    /// Answers every pending check: needs measuring.
    fn measure_all(&mut self) -> Vec<(PathBuf, Look)> {
        let checks = std::mem::take(&mut self.io.checks);
        let asked = checks.iter().map(|c| (c.model.clone(), c.look)).collect();
        for c in checks {
            self.event(Event::Checked(check::Checked {
                model: c.model,
                look: c.look,
                skip: None,
            }));
        }
        asked
    }

    /// A file written, settled and checked: queued (or started).
    fn arrive(&mut self, name: &str) -> PathBuf {
        let path = self.write(name, 1);
        self.later(SETTLE);
        self.measure_all();
        path
    }

    fn started(&self) -> Vec<PathBuf> {
        self.io.jobs.iter().map(|j| j.model.clone()).collect()
    }

    fn last_order(&self) -> &JobOrder {
        self.io.jobs.last().expect("a job was started")
    }

    fn end(&mut self, end: JobEnd) {
        self.event(Event::JobDone(Box::new(end)));
    }

    /// The running job's worker wrote an ok report.
    fn end_ok(&mut self, model: &Path) {
        let mut report = report_of(model, None);
        report.status = Status::Ok;
        report.error = None;
        self.end(measured(WorkerEnd::Exited(WorkerExit::Ok), Some(report)));
    }

    /// The running job's worker crashed; the supervisor wrote a failed
    /// report marked with the attempt.
    fn end_crashed(&mut self, model: &Path, attempt: u32) {
        let report = report_of(model, Some(attempt));
        self.end(measured(WorkerEnd::Signaled(libc::SIGSEGV), Some(report)));
    }

    fn state(&self) -> String {
        self.m.snapshot().state.to_owned()
    }
}

fn report_of(model: &Path, attempts: Option<u32>) -> Report {
    let mut r = report::failed_report_for(
        model,
        "00".into(),
        1,
        "the worker crashed".into(),
        report::now(),
        1,
    );
    r.attempts = attempts;
    r
}

/// The worker's progress on the CPU.
fn progress(precision: Precision, step: usize, total: usize) -> Progress {
    Progress {
        device: Device::Cpu,
        precision,
        step,
        total,
    }
}

fn measured(end: WorkerEnd, report: Option<Report>) -> JobEnd {
    JobEnd::Measured(Ok(Measured {
        end,
        report,
        disk_full: false,
    }))
}

#[test]
fn a_file_is_checked_once_settled_and_measured_once_checked() {
    let mut r = Rig::new(base_config());
    let a = r.write("a.pt", 1);
    assert!(r.io.checks.is_empty(), "not before the settle time");
    assert_eq!(r.m.next_wake(), Some(r.now + SETTLE));
    // Still being written: it waits again.
    r.later(SETTLE / 2);
    r.write("a.pt", 2);
    r.later(SETTLE / 2);
    assert!(r.io.checks.is_empty());
    r.later(SETTLE / 2);
    let asked = r.measure_all();
    assert_eq!(asked, [(a.clone(), Look::default())]);
    assert_eq!(r.started(), std::slice::from_ref(&a));
    let order = r.last_order();
    assert_eq!((order.attempt, order.retry_failures), (1, false));
    assert_eq!(r.state(), "benchmarking");
}

#[test]
fn a_job_queued_while_another_runs_waits_for_it() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    let b = r.arrive("b.pt");
    assert_eq!(r.started(), std::slice::from_ref(&a), "one job at a time");
    assert_eq!(r.m.queue.len(), 1);
    // Queued twice is queued once.
    r.arrive("b.pt");
    assert_eq!(r.m.queue.len(), 1);
    r.end_ok(&a);
    assert_eq!(r.started(), [a, b.clone()]);
    assert!(r.m.queue.is_empty());
    r.end_ok(&b);
    assert_eq!(r.state(), "idle");
    assert_eq!(r.m.history.finished.len(), 2);
    assert_eq!(r.m.history.finished[0].path, b, "most recent first");
}

#[test]
fn a_checked_model_that_needs_nothing_is_not_queued() {
    let mut r = Rig::new(base_config());
    let a = r.write("a.pt", 1);
    r.later(SETTLE);
    r.io.checks.clear();
    r.event(Event::Checked(check::Checked {
        model: a,
        look: Look::default(),
        skip: Some("its report is current".into()),
    }));
    assert!(r.started().is_empty());
    assert!(r.m.queue.is_empty());
}

#[test]
fn a_link_that_replaced_a_checked_model_is_not_queued() {
    let mut r = Rig::new(base_config());
    let a = r.write("a.pt", 1);
    r.later(SETTLE);
    r.io.files.remove(&a);
    r.io.links.push(a);
    r.measure_all();
    assert!(r.started().is_empty());
}

#[test]
fn a_crash_is_retried_after_the_back_off_and_given_up_after_max_attempts() {
    let mut r = Rig::new("settle_ms = 100\nretry_backoff_seconds = 60.0\nmax_attempts = 3\n");
    let a = r.arrive("a.pt");
    r.end_crashed(&a, 1);
    assert_eq!(r.started().len(), 1);
    assert_eq!(r.m.history.failures_total, 1);
    assert_eq!(
        r.m.retries.next_due(),
        Some(r.now + BACKOFF),
        "the back-off"
    );
    r.later(BACKOFF - Duration::from_millis(1));
    assert!(r.io.checks.is_empty(), "not before the back-off");
    r.later(Duration::from_millis(1));
    let asked = r.measure_all();
    assert_eq!(
        asked,
        [(
            a.clone(),
            Look {
                retry_failures: true,
                quiet: false
            }
        )],
        "the check measures the failure again"
    );
    assert_eq!(r.last_order().attempt, 2);
    r.end_crashed(&a, 2);
    // The back-off doubles.
    r.later(BACKOFF);
    assert!(r.io.checks.is_empty());
    r.later(BACKOFF);
    r.measure_all();
    assert_eq!(r.last_order().attempt, 3);
    r.end_crashed(&a, 3);
    // Given up: nothing is due any more, whatever the time.
    assert_eq!(r.m.retries.next_due(), None);
    r.later(BACKOFF * 100);
    assert!(r.io.checks.is_empty());
    assert_eq!(r.started().len(), 3);
    assert_eq!(r.m.history.failures_total, 3);
    assert_eq!(r.m.retries.attempt(&a), 1, "a later change starts over");
}

#[test]
fn a_model_changed_during_its_back_off_is_tried_again_at_once() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    r.end_crashed(&a, 1);
    r.later(Duration::from_secs(1));
    // A new version: no waiting for the back-off, and attempts start over.
    r.write("a.pt", 2);
    r.later(SETTLE);
    let asked = r.measure_all();
    assert_eq!(asked, [(a.clone(), Look::default())]);
    assert_eq!(r.started().len(), 2);
    assert_eq!(r.last_order().attempt, 1);
    r.end_ok(&a);
    assert_eq!(r.m.retries.next_due(), None, "the old retry is gone");
}

#[test]
fn a_success_after_a_crash_ends_the_retries() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    r.end_crashed(&a, 1);
    r.later(BACKOFF);
    r.measure_all();
    r.end_ok(&a);
    assert_eq!(r.m.retries.attempt(&a), 1);
    assert_eq!(r.m.retries.next_due(), None);
}

#[test]
fn a_model_deleted_while_queued_is_dropped_and_while_measured_is_not_retried() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    let b = r.arrive("b.pt");
    r.delete(&b);
    assert!(r.m.queue.is_empty());
    r.delete(&a);
    // Its worker died of the deletion: no retry.
    r.end_crashed(&a, 1);
    assert_eq!(r.m.retries.next_due(), None);
    assert_eq!(r.started(), [a]);
}

#[test]
fn a_stop_during_a_job_stops_it_and_starts_nothing_more() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    r.arrive("b.pt");
    r.event(Event::Stop(libc::SIGTERM));
    assert!(r.io.told_stopping);
    assert_eq!(r.state(), "stopping");
    assert!(!r.m.done(), "the job ends first");
    // Events after the stop are not acted on.
    r.write("c.pt", 1);
    assert!(r.m.settler.is_empty());
    // The worker was stopped: no report, so the model is measured again at
    // the next start (a missing report is stale); no retry, no failure.
    r.end(measured(WorkerEnd::Stopped, None));
    assert!(r.m.done());
    assert_eq!(
        r.started(),
        std::slice::from_ref(&a),
        "b waits for the next start"
    );
    assert!(r.m.history.finished.is_empty());
    assert_eq!(r.m.history.failures_total, 0);
    assert_eq!(
        r.io.stale_tmp_removed,
        [folder()],
        "a stopped worker may leave temporary files"
    );
    r.m.shut_down(r.now, &mut r.io);
    assert_eq!(r.io.statuses.last().unwrap().0, "stopped");
}

#[test]
fn a_stop_seen_by_the_signal_thread_first_starts_no_job() {
    let mut r = Rig::new(base_config());
    r.io.stop = true;
    r.arrive("a.pt");
    assert!(r.started().is_empty());
    r.event(Event::Stop(libc::SIGINT));
    assert!(r.m.done());
}

#[test]
fn a_full_disk_is_tried_again_after_the_back_off_without_counting_an_attempt() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    r.end(JobEnd::Measured(Ok(Measured {
        end: WorkerEnd::Exited(WorkerExit::DiskFull),
        report: None,
        disk_full: true,
    })));
    assert_eq!(r.state(), "disk full");
    assert_eq!(r.m.retries.next_due(), Some(r.now + BACKOFF));
    r.later(BACKOFF);
    r.measure_all();
    assert_eq!(
        r.last_order().attempt,
        1,
        "a full disk is not the model's fault"
    );
    r.end_ok(&a);
    assert_eq!(r.state(), "idle");
}

#[test]
fn a_rejection_whose_report_cannot_be_written_for_space_waits_too() {
    let mut r = Rig::new(base_config());
    let a = r.arrive("a.pt");
    let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
    r.end(JobEnd::Rejected(report_of(&a, None), Err(full)));
    assert_eq!(r.state(), "disk full");
    r.later(BACKOFF);
    assert_eq!(r.io.checks.len(), 1);
    // Written this time.
    r.measure_all();
    r.end(JobEnd::Rejected(report_of(&a, None), Ok(())));
    assert_eq!(r.state(), "idle");
    assert_eq!(r.m.history.finished.len(), 1);
}

#[test]
fn a_reload_clears_given_up_models_and_changes_folders() {
    let mut r = Rig::new("settle_ms = 100\nmax_attempts = 1\n");
    let a = r.arrive("a.pt");
    r.end_crashed(&a, 1);
    assert_eq!(r.m.retries.next_due(), None, "given up at once");
    // A second folder with a model in it; /d stays.
    let e = PathBuf::from("/e");
    r.io.files
        .insert(e.join("b.pt"), (1, SystemTime::UNIX_EPOCH));
    r.io.reload = Some(Ok(Reloaded {
        config: config("settle_ms = 100\nmax_attempts = 2\n"),
        folders: vec![folder(), e.clone()],
        file: None,
    }));
    r.event(Event::Reload);
    assert_eq!(r.io.watched, [folder(), e.clone()]);
    r.later(SETTLE);
    let mut asked = r.measure_all();
    asked.sort_by(|x, y| x.0.cmp(&y.0));
    let scanned = Look {
        retry_failures: true,
        quiet: true,
    };
    assert_eq!(
        asked,
        [(a.clone(), scanned), (e.join("b.pt"), scanned)],
        "every model is looked at again, failures worth retrying included"
    );
    assert_eq!(r.last_order().model, a);
    assert!(r.last_order().retry_failures);
    assert_eq!(r.last_order().config.max_attempts, 2);
    // /d dropped: its queue goes with it.
    r.io.reload = Some(Ok(Reloaded {
        config: config("settle_ms = 100\n"),
        folders: vec![e.clone()],
        file: None,
    }));
    r.event(Event::Reload);
    assert_eq!(r.io.watched, std::slice::from_ref(&e));
    assert_eq!(r.m.folders, [e]);
}

#[test]
fn a_reload_that_fails_keeps_everything() {
    let mut r = Rig::new("settle_ms = 100\nmax_attempts = 1\n");
    r.io.reload = Some(Err("`max_attempts` must be at least 1".into()));
    r.event(Event::Reload);
    assert_eq!(r.m.config.max_attempts, 1);
    assert_eq!(r.io.watched, [folder()]);
    assert!(r.io.checks.is_empty(), "no rescan");
}

#[test]
fn models_present_at_start_are_checked_quietly_with_retries() {
    let mut r = Rig::with_files(base_config(), &["a.pt", "notes.txt"]);
    r.later(SETTLE);
    let asked = r.measure_all();
    assert_eq!(
        asked,
        [(
            folder().join("a.pt"),
            Look {
                retry_failures: true,
                quiet: true
            }
        )]
    );
    // Written again before it settled: still found by the scan.
    let mut r = Rig::with_files(base_config(), &["a.pt"]);
    r.write("a.pt", 2);
    r.later(SETTLE);
    assert!(r.io.checks[0].look.quiet && r.io.checks[0].look.retry_failures);
}

#[test]
fn a_removed_settings_file_or_report_asks_for_a_check() {
    let mut r = Rig::new(base_config());
    r.event(Event::Changed(Change::Removed(
        folder().join("a.pt.report.toml"),
    )));
    r.event(Event::Changed(Change::Removed(folder().join("b.pt.toml"))));
    let asked: Vec<PathBuf> = r.io.checks.iter().map(|c| c.model.clone()).collect();
    assert_eq!(asked, [folder().join("a.pt"), folder().join("b.pt")]);
    // Files outside the drop folders are not ours.
    r.event(Event::Changed(Change::Removed(
        "/elsewhere/c.pt.toml".into(),
    )));
    assert_eq!(r.io.checks.len(), 2);
}

#[test]
fn a_removed_drop_folder_forgets_its_models() {
    let mut r = Rig::new(base_config());
    r.arrive("a.pt");
    r.arrive("b.pt");
    r.write("c.pt", 1);
    r.event(Event::Changed(Change::Removed(folder())));
    assert!(r.m.queue.is_empty());
    assert!(r.m.settler.is_empty());
}

#[test]
fn progress_lines_update_the_step_and_status_writes_are_throttled() {
    let mut r = Rig::new(base_config());
    let writes_at_start = r.io.statuses.len();
    assert_eq!(writes_at_start, 1, "start-up writes the status at once");
    r.later(WRITE_INTERVAL);
    r.arrive("a.pt");
    let after_start = r.io.statuses.len();
    assert_eq!(after_start, 2);
    assert!(r.io.statuses[1]
        .1
        .starts_with("benchmarking a.pt: starting"));
    // A burst of progress lines within one interval: no write yet...
    for step in 1..=10 {
        r.event(Event::Progress(progress(Precision::Bf16, step, 10)));
    }
    assert_eq!(r.io.statuses.len(), after_start);
    assert_eq!(r.m.next_wake(), Some(r.now + WRITE_INTERVAL));
    // ...then one, with the last step.
    r.later(WRITE_INTERVAL);
    assert_eq!(r.io.statuses.len(), after_start + 1);
    assert_eq!(
        r.io.statuses.last().unwrap().1,
        "benchmarking a.pt: bf16 10/10"
    );
    // Nothing changed: nothing written, and nothing to wake for.
    r.later(WRITE_INTERVAL * 10);
    assert_eq!(r.io.statuses.len(), after_start + 1);
    assert_eq!(r.m.next_wake(), None);
}

#[test]
fn metrics_follow_reports_and_the_daemons_facts_throttled() {
    let mut r = Rig::new("settle_ms = 100\ntextfile_dir = \"/prom\"\n");
    assert_eq!(r.io.metrics.len(), 1, "start-up writes the metrics at once");
    r.later(WRITE_INTERVAL);
    let a = r.arrive("a.pt");
    assert!(r.io.metrics.last().unwrap().measuring);
    // A report written (by anyone) asks for a rewrite, throttled.
    r.event(Event::Changed(Change::Written(
        folder().join("x.pt.report.toml"),
    )));
    assert_eq!(r.io.metrics.len(), 2);
    r.later(WRITE_INTERVAL);
    assert_eq!(r.io.metrics.len(), 3);
    r.later(WRITE_INTERVAL);
    r.end_crashed(&a, 1);
    let facts = r.io.metrics.last().unwrap();
    assert_eq!((facts.measuring, facts.failures_total), (false, 1));
    // Progress lines are no news to the metrics.
    r.later(WRITE_INTERVAL);
    let before = r.io.metrics.len();
    r.later(BACKOFF);
    r.measure_all();
    r.later(WRITE_INTERVAL);
    let before_progress = r.io.metrics.len();
    assert!(before_progress > before);
    r.event(Event::Progress(progress(Precision::Fp32, 1, 2)));
    r.later(WRITE_INTERVAL);
    assert_eq!(r.io.metrics.len(), before_progress);
}

#[test]
fn without_a_textfile_dir_no_metrics_are_written_or_waited_for() {
    let mut r = Rig::new(base_config());
    r.arrive("a.pt");
    r.later(WRITE_INTERVAL);
    assert!(r.io.metrics.is_empty());
    assert_eq!(r.m.next_wake(), None);
}

#[test]
fn a_refused_job_is_neither_remembered_nor_retried() {
    let mut r = Rig::new(base_config());
    r.arrive("a.pt");
    r.end(measured(WorkerEnd::Exited(WorkerExit::Error), None));
    assert!(r.m.history.finished.is_empty());
    assert_eq!(r.m.retries.next_due(), None);
    assert_eq!(r.m.history.failures_total, 0);
    assert_eq!(r.state(), "idle");
}
