//! Running a measurement job in a `precisiond-worker` child process.
//!
//! libtorch lives only in the worker: a segfault, abort or hang in it ends
//! that process, and the supervisor still writes a `failed` report for the
//! model. The supervisor itself never loads libtorch.

use crate::cli::exit;
use crate::report::{self, ModelFacts, Report, RunFacts, Status};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
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
    let me = std::env::current_exe().map_err(|e| format!("cannot find precisiond's own path: {e}"))?;
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
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
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
    matches!(end, WorkerEnd::Exited(exit::OK) | WorkerEnd::Exited(exit::REPORTED_FAILURE))
}

/// A `failed` report written by the supervisor for a model whose worker
/// could not write one. Needs no libtorch.
pub fn failed_report(model: &Path, error: String, started: toml::value::Datetime, threads: usize) -> Report {
    let bytes = std::fs::read(model).unwrap_or_default();
    Report {
        schema_version: report::SCHEMA_VERSION,
        status: Status::Failed,
        error: Some(error),
        model: ModelFacts {
            file: crate::facts::file_name(model),
            sha256: crate::facts::hex_sha256(&bytes),
            bytes: bytes.len() as u64,
            format: "torchscript".into(),
            settings_file: None,
            settings_sha256: None,
        },
        run: RunFacts {
            started,
            finished: report::now(),
            precisiond: env!("CARGO_PKG_VERSION").into(),
            libtorch: env!("PRECISIOND_LIBTORCH_VERSION").into(),
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
