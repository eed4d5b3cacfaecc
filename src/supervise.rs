//! Running a measurement job in a `precisiond-worker` child process.
//!
//! libtorch lives only in the worker: a segfault, abort or hang in it ends
//! that process, and the supervisor still writes a `failed` report for the
//! model. The supervisor itself never loads libtorch.

use crate::cli::RunArgs;
use crate::protocol::{self, exit};
use crate::report::{self, ModelFacts, Report, RunFacts, Status};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Exited on its own with this code.
    Exited(i32),
    /// Killed by a signal it did not send itself to (crash or `kill`).
    Signaled(i32),
    /// Ran past its time limit and was killed.
    TimedOut(Duration),
    /// Stopped because the supervisor is shutting down.
    Stopped,
}

impl WorkerEnd {
    /// Words for a failed report, when the worker could not write its own.
    pub fn describe(&self) -> String {
        match self {
            WorkerEnd::Exited(code) => format!("the worker exited with code {code} without writing a report"),
            WorkerEnd::Signaled(sig) => format!(
                "the worker process was killed by signal {sig} ({}) while measuring the model; \
                 libtorch crashed on this model or the process was killed from outside",
                signal_name(*sig)
            ),
            WorkerEnd::TimedOut(limit) => format!(
                "the worker ran past its time limit of {} s and was killed; raise the worker timeout \
                 or lower the per-precision budget",
                limit.as_secs_f64()
            ),
            WorkerEnd::Stopped => "precisiond was stopped while this model was being measured; it is measured again at the next start".into(),
        }
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV, segmentation fault",
        libc::SIGABRT => "SIGABRT, abort",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS, bus error",
        libc::SIGFPE => "SIGFPE, arithmetic error",
        libc::SIGILL => "SIGILL, illegal instruction",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

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

/// Runs the worker with `args`, passing each stdout line to `on_line`,
/// until it exits, runs past `timeout`, or `stop` is set.
pub fn run_worker(
    exe: &Path,
    args: &[OsString],
    timeout: Option<Duration>,
    stop: &AtomicBool,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<WorkerEnd> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Notifications to systemd are the supervisor's alone.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        // Its own process group: a Ctrl-C in a terminal reaches only the
        // supervisor, which then stops the worker itself, instead of the
        // worker dying of SIGINT and being reported as crashed.
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            // A supervisor killed outright (SIGKILL) takes its worker with
            // it, so a restarted daemon never finds an orphan still timing.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let end = loop {
        // Lines arrive as the worker moves on; the timeout doubles as the
        // interval at which the exit, the time limit and `stop` are checked.
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => on_line(&line),
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait()? {
            break match (status.code(), status.signal()) {
                (Some(code), _) => WorkerEnd::Exited(code),
                (None, Some(sig)) => WorkerEnd::Signaled(sig),
                (None, None) => WorkerEnd::Exited(-1),
            };
        }
        if stop.load(Ordering::SeqCst) {
            kill(&mut child);
            break WorkerEnd::Stopped;
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                kill(&mut child);
                break WorkerEnd::TimedOut(limit);
            }
        }
    };
    // Drain what the worker printed last.
    let _ = reader.join();
    for line in rx.try_iter() {
        on_line(&line);
    }
    Ok(end)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// True when the worker wrote its own report (ok or failed).
pub fn worker_wrote_report(end: &WorkerEnd) -> bool {
    matches!(
        end,
        WorkerEnd::Exited(exit::OK) | WorkerEnd::Exited(exit::REPORTED_FAILURE)
    )
}

/// A `failed` report written by the supervisor for a model whose worker
/// could not write one. Needs no libtorch.
pub fn failed_report(
    model: &Path,
    error: String,
    started: toml::value::Datetime,
    threads: usize,
) -> Report {
    // Streamed: a multi-gigabyte model must not pass through the
    // supervisor's memory.
    let (sha256, bytes) = File::open(model)
        .and_then(sha256_of)
        .unwrap_or_else(|_| (String::new(), 0));
    failed_report_for(model, sha256, bytes, error, started, threads)
}

/// A `failed` report for a model with the given hash and size; the model
/// is not read (a file over the size limit is rejected unread).
pub fn failed_report_for(
    model: &Path,
    sha256: String,
    bytes: u64,
    error: String,
    started: toml::value::Datetime,
    threads: usize,
) -> Report {
    Report {
        schema_version: report::SCHEMA_VERSION,
        status: Status::Failed,
        error: Some(error),
        model: ModelFacts {
            file: crate::facts::file_name(model),
            sha256,
            bytes,
            format: "torchscript".into(),
            settings_file: None,
            settings_sha256: None,
        },
        run: RunFacts {
            started,
            finished: report::now(),
            precisiond: env!("CARGO_PKG_VERSION").into(),
            // Filled in from the worker's first line where a worker ran.
            libtorch: "unknown".into(),
            threads,
            host: crate::facts::host_name(),
            max_seconds: 0.0,
            target_rel_ci: 0.0,
        },
        input_source: None,
        inputs: Vec::new(),
        notes: Vec::new(),
        hardware: None,
        results: Vec::new(),
    }
}

/// How a job ended, seen from the supervisor.
#[derive(Debug)]
pub struct Measured {
    pub end: WorkerEnd,
    /// The report now beside the model: the worker's own, or a failed one
    /// written here for a worker that crashed, hung or was killed. None when
    /// the worker refused the job (exit 1, it printed why) or was stopped.
    pub report: Option<Report>,
}

/// Measures one model in a worker process: the path shared by
/// `precisiond run` and the daemon. Writes a failed report when the worker
/// could not; writes nothing when `stop` ended it (the model is measured
/// again at the next start). Err: the worker could not be started, or a
/// report could not be read or written.
pub fn measure(
    worker: &Path,
    args: &RunArgs,
    stop: &AtomicBool,
    mut on_line: impl FnMut(&str),
) -> Result<Measured, String> {
    let report_path = args.report_path();
    let started = report::now();
    let mut worker_args = vec!["run".into()];
    worker_args.extend(args.to_args());
    let timeout = args.timeout.map(Duration::from_secs_f64);
    let mut libtorch = None;
    let end = run_worker(worker, &worker_args, timeout, stop, |line| {
        match protocol::parse_libtorch(line) {
            Some(version) => libtorch = Some(version.to_owned()),
            None => on_line(line),
        }
    })
        .map_err(|e| format!("cannot start the worker {}: {e}", worker.display()))?;
    if worker_wrote_report(&end) {
        let report = load_report(&report_path)?;
        return Ok(Measured {
            end,
            report: Some(report),
        });
    }
    // A worker that died while we were stopping died of the stop: it is not
    // the model's fault.
    if end == WorkerEnd::Stopped
        || stop.load(Ordering::SeqCst)
        || end == WorkerEnd::Exited(exit::ERROR)
    {
        return Ok(Measured { end, report: None });
    }
    let mut report = failed_report(&args.model, end.describe(), started, args.threads());
    // The settings the job ran with, so a daemon can tell later whether
    // this report is still current.
    let settings = args
        .settings
        .clone()
        .unwrap_or_else(|| crate::settings::default_path(&args.model));
    if let Ok((sha, _)) = open_regular(&settings).and_then(sha256_of) {
        report.model.settings_file = Some(settings.display().to_string());
        report.model.settings_sha256 = Some(sha);
    }
    report.run.max_seconds = args.max_seconds;
    report.run.target_rel_ci = args.target_ci_percent / 100.0;
    if let Some(version) = libtorch {
        report.run.libtorch = version;
    }
    report
        .write(&report_path)
        .map_err(|e| format!("cannot write report {}: {e}", report_path.display()))?;
    Ok(Measured {
        end,
        report: Some(report),
    })
}

/// Reads a report without following a symlink at its path.
pub fn load_report(path: &Path) -> Result<Report, String> {
    let mut text = String::new();
    open_regular(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read report {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("report {} is not valid: {e}", path.display()))
}

/// Opens `path` for reading only if it is a regular file itself: a symlink
/// is not followed (ELOOP), and a FIFO or device is refused without
/// blocking on it. The drop folder is untrusted input.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// sha256 (hex) and length of everything `reader` yields, read in blocks.
pub fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, total))
}
