//! Running a child process under a time limit: the one runner behind the
//! worker (started by the supervisor), the quantizing process and trtexec
//! (started by the worker).
//!
//! Every child gets a process group of its own and dies with its parent
//! (PR_SET_PDEATHSIG), and when it runs past its limit or is stopped the
//! whole group is killed, so nothing it started keeps running and competes
//! with the next timing.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A stretch of a child's work with a time limit of its own (the worker's
/// engine build): while it lasts, the child's own clock stops and this
/// limit holds instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// What it is, for messages: `engine-build`.
    pub name: String,
    pub limit: Duration,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exited on its own with this code.
    Exited(i32),
    /// Killed by a signal it did not get from us (crash or `kill`).
    Signaled(i32),
    /// Ran past its time limit; its process group was killed.
    TimedOut(Duration),
    /// A phase it announced ([`Phase`], only a child run with
    /// [`run_phased`]) ran past that phase's limit; its process group was
    /// killed.
    PhaseTimedOut(String, Duration),
    /// `stop` was set; its process group was killed.
    Stopped,
}

impl Ended {
    pub fn success(&self) -> bool {
        *self == Ended::Exited(0)
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exit code {code}"),
            Ended::Signaled(sig) => write!(f, "signal {sig}, {}", signal_name(*sig)),
            Ended::TimedOut(limit) => write!(f, "killed after {} s", limit.as_secs_f64()),
            Ended::PhaseTimedOut(phase, limit) => {
                write!(f, "killed after {} s of {phase}", limit.as_secs_f64())
            }
            Ended::Stopped => write!(f, "stopped"),
        }
    }
}

/// The variable naming a program that runs precisiond's own binaries
/// (`scripts/aarch64-run.sh` sets it to itself, so a worker started by an
/// emulated supervisor is emulated too: the kernel cannot run an aarch64
/// program on x86 by itself).
pub const RUNNER_VAR: &str = "PRECISIOND_RUNNER";

/// A command for one of precisiond's own binaries (the worker, the
/// quantizing process): through the runner when one is set.
pub fn own_binary(program: &Path) -> Command {
    match std::env::var_os(RUNNER_VAR).filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut command = Command::new(runner);
            command.arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// When to give up on a child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits<'a> {
    pub timeout: Option<Duration>,
    /// Set from elsewhere (a signal handler) to stop the child.
    pub stop: Option<&'a AtomicBool>,
}

/// Starts `command` in a process group of its own, dying with this process,
/// passes each line of its stdout (when the caller piped it) to `on_line`
/// as it comes, and waits until it exits or `limits` end it.
pub fn run(
    command: &mut Command,
    limits: Limits,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<Ended> {
    supervise(command, limits, |line, _| on_line(&line))
}

/// [`run`] for a child that announces phases: `on_line` gets each line and
/// says whether it starts a phase (`Some(Some(phase))`), ends one
/// (`Some(None)`) or neither (`None`); during a phase the child is held to
/// the phase's own limit, and `limits.timeout` counts only the time outside
/// phases. The worker's protocol (`crate::protocol::run_worker`) is built on
/// this; the runner itself knows no message.
pub fn run_phased(
    command: &mut Command,
    limits: Limits,
    mut on_line: impl FnMut(String) -> Option<Option<Phase>>,
) -> std::io::Result<Ended> {
    supervise(command, limits, |line, clock| {
        if let Some(next) = on_line(line) {
            clock.phase(next);
        }
    })
}

/// What [`run`] and [`run_phased`] share: `on_line` gets each line with the
/// clock that phases change.
fn supervise(
    command: &mut Command,
    limits: Limits,
    mut on_line: impl FnMut(String, &mut Clock),
) -> std::io::Result<Ended> {
    // Its own process group: a Ctrl-C in a terminal reaches only us, and
    // we can kill everything it started at once.
    command.process_group(0);
    // PR_SET_PDEATHSIG fires when the *thread* that forked the child ends,
    // not the process: every caller spawns from its main thread (the
    // supervisor's, the worker's), which lives as long as the process.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no
    // memory of ours.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no
            // signal will ever come, and the child was reparented. Leave
            // at once rather than run on unsupervised.
            if libc::getppid() != parent {
                libc::_exit(libc::EXIT_FAILURE);
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let (tx, rx) = mpsc::channel();
    let reader = child.stdout.take().map(|stdout| {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    });
    let mut clock = Clock::start();
    let ended = loop {
        // Lines arrive as the child moves on; the timeout doubles as the
        // interval at which the exit, the time limit and `stop` are checked.
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            on_line(line, &mut clock);
        }
        if let Some(status) = child.try_wait()? {
            break match (status.code(), status.signal()) {
                (Some(code), _) => Ended::Exited(code),
                (None, Some(sig)) => Ended::Signaled(sig),
                (None, None) => Ended::Exited(-1),
            };
        }
        if limits.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            kill_group(&mut child);
            break Ended::Stopped;
        }
        if let Some(over) = clock.over(limits.timeout) {
            kill_group(&mut child);
            break over;
        }
    };
    // What the child printed last. A grandchild that kept the pipe open
    // would block this; it was killed with the group or dies with the child.
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    for line in rx.try_iter() {
        on_line(line, &mut clock);
    }
    Ok(ended)
}

/// The time a child has used against its limits: its own time outside
/// phases, and the current phase's.
struct Clock {
    /// Own time before the current stretch.
    used: Duration,
    /// Since when the current stretch (own time or a phase) runs.
    since: Instant,
    phase: Option<Phase>,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            used: Duration::ZERO,
            since: Instant::now(),
            phase: None,
        }
    }

    /// A phase starts (Some) or ends (None).
    fn phase(&mut self, next: Option<Phase>) {
        if self.phase.is_none() {
            self.used += self.since.elapsed();
        }
        self.since = Instant::now();
        self.phase = next;
    }

    /// How the child ends when it is past a limit now.
    fn over(&self, timeout: Option<Duration>) -> Option<Ended> {
        match &self.phase {
            Some(p) => (self.since.elapsed() >= p.limit)
                .then(|| Ended::PhaseTimedOut(p.name.clone(), p.limit)),
            None => timeout
                .filter(|limit| self.used + self.since.elapsed() >= *limit)
                .map(Ended::TimedOut),
        }
    }
}

/// What a [`run_logged`] child printed and how it ended.
pub struct Captured {
    pub success: bool,
    /// How it ended, e.g. "exit code 1", for reasons.
    pub status: String,
    pub text: String,
}

/// Runs `exe` with `args` (trtexec; `OsString`s, as paths in them need
/// not be UTF-8), stdout and stderr together into a
/// file (the log, when given, else a temporary one), killing its whole
/// process group after `timeout`. Like every child here it dies with its
/// parent, so a killed job never leaves a build running.
pub fn run_logged(
    exe: &Path,
    args: &[OsString],
    timeout: Duration,
    log: Option<&Path>,
) -> Result<Captured, RunLoggedError> {
    let (file, temp) = match log {
        Some(path) => (
            std::fs::File::create(path).map_err(|error| RunLoggedError::Log {
                path: path.to_path_buf(),
                error,
            })?,
            None,
        ),
        None => {
            let t = tempfile::NamedTempFile::new().map_err(RunLoggedError::TempFile)?;
            (t.reopen().map_err(RunLoggedError::Reopen)?, Some(t))
        }
    };
    let log_path = log
        .map(Path::to_path_buf)
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .expect("a log file");
    let err_file = file.try_clone().map_err(RunLoggedError::Reopen)?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file));
    let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    log::info!("running {} {}", exe.display(), shown.join(" "));
    let limits = Limits {
        timeout: Some(timeout),
        stop: None,
    };
    // Its output goes to the log file, not a pipe: no lines to pass on.
    let ended = run(&mut command, limits, |_| {}).map_err(|error| RunLoggedError::Spawn {
        exe: exe.to_path_buf(),
        error,
    })?;
    if let Ended::TimedOut(_) = ended {
        return Err(RunLoggedError::TimedOut {
            exe: exe.to_path_buf(),
            timeout,
            log: log_path,
        });
    }
    let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    Ok(Captured {
        success: ended.success(),
        status: ended.to_string(),
        text,
    })
}

/// Why a [`run_logged`] child did not run to its end. (One that ran and
/// failed is a [`Captured`] without `success`: its log says why.)
#[derive(Debug, thiserror::Error)]
pub enum RunLoggedError {
    #[error("cannot write {}: {error}", path.display())]
    Log {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create a temporary file: {0}")]
    TempFile(std::io::Error),
    /// The log file could not be opened a second time (for stderr, or the
    /// temporary one for reading).
    #[error("{0}")]
    Reopen(std::io::Error),
    #[error("cannot run {}: {error}", exe.display())]
    Spawn { exe: PathBuf, error: std::io::Error },
    #[error(
        "{} ran past {} s and was killed (log: {})",
        exe.display(),
        timeout.as_secs(),
        log.display()
    )]
    TimedOut {
        exe: PathBuf,
        timeout: Duration,
        log: PathBuf,
    },
}

/// Kills the child's whole process group, then reaps the child.
fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the group the child leads.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_and_the_exit_code_is_kept() {
        let mut lines = Vec::new();
        let ended = run(
            Command::new("sh")
                .args(["-c", "echo one; echo two; exit 3"])
                .stdout(Stdio::piped()),
            Limits::default(),
            |l| lines.push(l.to_owned()),
        )
        .unwrap();
        assert_eq!(ended, Ended::Exited(3));
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        // The grandchild would outlive a kill of the child alone.
        let script = format!("sleep 30 & echo $! > '{}'; wait", pid_file.display());
        let ended = run(
            Command::new("sh").args(["-c", &script]),
            Limits {
                timeout: Some(Duration::from_millis(500)),
                stop: None,
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(ended, Ended::TimedOut(Duration::from_millis(500)));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Reaped by init after the kill; give it a moment.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ")
        });
        assert!(gone, "grandchild {pid} still runs");
    }

    #[test]
    fn own_binaries_go_through_the_runner_when_one_is_set() {
        let plain = own_binary(Path::new("/bin/echo"));
        assert_eq!(plain.get_program(), "/bin/echo");
        // Set for this one check only; no other test reads the variable.
        std::env::set_var(RUNNER_VAR, "/opt/run.sh");
        let wrapped = own_binary(Path::new("/bin/echo"));
        std::env::remove_var(RUNNER_VAR);
        assert_eq!(wrapped.get_program(), "/opt/run.sh");
        assert_eq!(wrapped.get_args().collect::<Vec<_>>(), ["/bin/echo"]);
    }

    #[test]
    fn stop_ends_the_child() {
        let stop = AtomicBool::new(true);
        let ended = run(
            Command::new("sleep").arg("30"),
            Limits {
                timeout: None,
                stop: Some(&stop),
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(ended, Ended::Stopped);
    }
}
