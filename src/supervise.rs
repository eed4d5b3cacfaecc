//! Running a measurement job in a `precisiond-worker` child process.
//!
//! libtorch lives only in the worker: a segfault, abort or hang in it ends
//! that process, and the supervisor still writes a `failed` report for the
//! model. The supervisor itself never loads libtorch.

use precisiond_core::child::{self, Limits};
use precisiond_core::flags;
use precisiond_core::fsutil::{open_regular, sha256_of};
use precisiond_core::job::JobSpec;
use precisiond_core::protocol::{Partial, Progress, WorkerExit, WorkerLine, WorkerMessage};
use precisiond_core::report::{self, Report, Status};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a worker ended.
pub use precisiond_core::protocol::WorkerEnd;

/// The worker binary: `PRECISIOND_WORKER`, else `precisiond-worker` beside
/// this executable.
pub fn worker_exe() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PRECISIOND_WORKER") {
        return Ok(PathBuf::from(path));
    }
    let me =
        std::env::current_exe().map_err(|e| format!("cannot find precisiond's own path: {e}"))?;
    let worker = me.with_file_name("precisiond-worker");
    if worker.exists() {
        Ok(worker)
    } else {
        Err(format!(
            "{} is missing: install precisiond-worker beside precisiond (make install does) or set PRECISIOND_WORKER",
            worker.display()
        ))
    }
}

/// Runs the worker with `args` and `input` on its standard input (what
/// it is asked to do, as TOML), passing each stdout line to `on_line` as
/// read, until it exits, runs past `timeout` (or a phase past its own
/// limit), or `stop` is set.
pub fn run_worker(
    exe: &Path,
    args: &[OsString],
    input: &str,
    timeout: Option<Duration>,
    stop: &AtomicBool,
    on_line: impl FnMut(WorkerLine),
) -> std::io::Result<WorkerEnd> {
    let mut command = child::own_binary(exe);
    command
        .args(args)
        .stdin(input_file(input)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Notifications to systemd are the supervisor's alone.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    // In a process group of its own (a Ctrl-C in a terminal reaches only
    // the supervisor, which then stops the worker itself, instead of the
    // worker dying of SIGINT and being reported as crashed), and dying with
    // the supervisor, so a restarted daemon never finds an orphan timing.
    precisiond_core::protocol::run_worker(
        &mut command,
        Limits {
            timeout,
            stop: Some(stop),
        },
        on_line,
    )
    .map(WorkerEnd::from)
}

/// `input` as a file to read from the start: an unnamed temporary file,
/// not a pipe, so no writer thread is needed however long it is, and
/// nothing is left behind.
fn input_file(input: &str) -> std::io::Result<Stdio> {
    use std::io::{Seek, Write};
    let mut file = tempfile::tempfile()?;
    file.write_all(input.as_bytes())?;
    file.rewind()?;
    Ok(Stdio::from(file))
}

pub use precisiond_core::report::{failed_report, failed_report_for};

/// How a job ended, seen from the supervisor.
#[derive(Debug)]
pub struct Measured {
    pub end: WorkerEnd,
    /// The report now beside the model: the worker's own, or a failed one
    /// written here for a worker that crashed, hung or was killed. None when
    /// the worker refused the job (exit 1, it printed why), was stopped, or
    /// the disk is full.
    pub report: Option<Report>,
    /// No report could be written for lack of space: the job is worth
    /// running again once there is some.
    pub disk_full: bool,
}

impl Measured {
    fn without_report(end: WorkerEnd) -> Measured {
        let disk_full = end == WorkerEnd::Exited(WorkerExit::DiskFull);
        Measured {
            end,
            report: None,
            disk_full,
        }
    }
}

/// Measures one model in a worker process: the path shared by
/// `precisiond run` and the daemon. Writes a failed report when the worker
/// could not (marked with `attempt`, the how-manieth try in a row this is:
/// such a failure is worth retrying); writes nothing when `stop` ended it
/// (the model is measured again at the next start). Err: the worker could
/// not be started, or a report could not be read or written. `on_progress`
/// hears of each step as the worker starts it.
pub fn measure(
    worker: &Path,
    spec: &JobSpec,
    attempt: u32,
    stop: &AtomicBool,
    mut on_progress: impl FnMut(Progress),
) -> Result<Measured, String> {
    let report_path = &spec.report;
    let started = report::now();
    let worker_args = flags::worker_run_args(spec);
    let mut libtorch = None;
    let mut partial: Option<Partial> = None;
    let end = run_worker(
        worker,
        &worker_args,
        &spec.to_toml(),
        spec.timeout(),
        stop,
        |line| match line {
            WorkerLine::Message(WorkerMessage::Libtorch { version }) => libtorch = Some(version),
            WorkerLine::Message(WorkerMessage::Partial(p)) => partial = Some(*p),
            WorkerLine::Message(WorkerMessage::Progress(progress)) => on_progress(progress),
            // The runner has held the worker to the phase's limit already.
            WorkerLine::Message(message @ (WorkerMessage::Phase(_) | WorkerMessage::PhaseEnd)) => {
                log::debug!("worker: {message:?}")
            }
            WorkerLine::Malformed(e) => log::warn!("{e}"),
            WorkerLine::Text(text) => log::debug!("worker: {text}"),
        },
    )
    .map_err(|e| format!("cannot start the worker {}: {e}", worker.display()))?;
    if end.wrote_report() {
        let report = load_report(report_path)?;
        return Ok(Measured {
            end,
            report: Some(report),
            disk_full: false,
        });
    }
    // A worker that died while we were stopping died of the stop: it is not
    // the model's fault.
    if end == WorkerEnd::Stopped
        || stop.load(Ordering::SeqCst)
        || end == WorkerEnd::Exited(WorkerExit::Error)
        || end == WorkerEnd::Exited(WorkerExit::DiskFull)
    {
        return Ok(Measured::without_report(end));
    }
    let mut report = match partial {
        Some(partial) => kept_results(partial, &end),
        None => fresh_failed_report(spec, &end, started, libtorch),
    };
    report.attempts = Some(attempt);
    if let Err(e) = precisiond_core::output::write_report(&report, report_path, spec.knobs.chart) {
        if precisiond_core::fsutil::is_disk_full(&e) {
            log::warn!("cannot write report {}: {e}", report_path.display());
            return Ok(Measured {
                end,
                report: None,
                disk_full: true,
            });
        }
        return Err(format!(
            "cannot write report {}: {e}",
            report_path.display()
        ));
    }
    Ok(Measured {
        end,
        report: Some(report),
        disk_full: false,
    })
}

/// The worker's report so far, made the failed report of a worker that
/// died: every result finished before it stays, the step it was measuring
/// fails with the cause.
fn kept_results(partial: Partial, end: &WorkerEnd) -> Report {
    let Partial {
        measuring,
        mut report,
    } = partial;
    let cause = end.describe();
    report.status = Status::Failed;
    report.error = Some(match &measuring {
        Some(step) => format!(
            "{cause} (while measuring {} on {}); the results finished before it are kept",
            step.precision.name(),
            step.device
        ),
        None => cause.clone(),
    });
    if let Some(mut step) = measuring {
        step.reason = cause;
        report.results.push(step);
    }
    report.run.finished = report::now();
    report
}

/// A failed report from scratch, for a worker that died before it said
/// what it had found.
fn fresh_failed_report(
    spec: &JobSpec,
    end: &WorkerEnd,
    started: toml::value::Datetime,
    libtorch: Option<String>,
) -> Report {
    let mut report = failed_report(&spec.model, end.describe(), started, spec.knobs.threads());
    // The settings the job ran with, so a daemon can tell later whether
    // this report is still current.
    let settings = spec.settings_path();
    if let Ok((sha, _)) = open_regular(&settings).and_then(sha256_of) {
        report.model.settings_file = Some(settings.display().to_string());
        report.model.settings_sha256 = Some(sha);
    }
    report.run.max_seconds = spec.knobs.max_seconds;
    report.run.target_rel_ci = spec.knobs.target_ci_percent / 100.0;
    if let Some(version) = libtorch {
        report.run.libtorch = version;
    }
    report
}

/// A report as written beside a model (one home: `precisiond_core::report::load`).
pub use precisiond_core::report::load as load_report;
