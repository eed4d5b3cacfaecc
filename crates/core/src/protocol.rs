//! What passes between the supervisor and a worker process: the worker's
//! exit causes and their codes, the messages it prints on stdout (build
//! facts, phases, progress, the report so far), and its build facts for
//! `build-info`. Both binaries use these definitions, so the two ends cannot
//! drift apart: the worker says [`WorkerMessage`]s with
//! [`WorkerMessage::to_line`], and the supervisor reads them back with the
//! one [`WorkerMessage::parse`] (through [`WorkerLine::parse`]).

use crate::child::Ended;
use crate::devices::Device;
use crate::precision::Precision;
use crate::report::{PrecisionResult, Report};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Why a worker exited on its own, with the exit code that carries it to
/// the supervisor. The codes are the contract between the two binaries and
/// what a script running `precisiond-worker` by hand sees: they live here
/// and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerExit {
    /// The report was written and says ok (exit code 0).
    Ok,
    /// Something the user must fix; message on stderr (exit code 1).
    Error,
    /// The report was written and says failed (exit code 10).
    ReportedFailure,
    /// The report could not be written: the disk (or quota) is full (exit
    /// code 11).
    DiskFull,
}

impl WorkerExit {
    pub const ALL: [WorkerExit; 4] = [
        WorkerExit::Ok,
        WorkerExit::Error,
        WorkerExit::ReportedFailure,
        WorkerExit::DiskFull,
    ];

    /// The process exit code.
    pub const fn code(self) -> i32 {
        match self {
            WorkerExit::Ok => 0,
            WorkerExit::Error => 1,
            WorkerExit::ReportedFailure => 10,
            WorkerExit::DiskFull => 11,
        }
    }

    /// The cause an exit code stands for; None for a code the worker never
    /// exits with (a crash in a runtime that calls exit(n), a runner that
    /// failed).
    pub fn from_code(code: i32) -> Option<WorkerExit> {
        WorkerExit::ALL.into_iter().find(|e| e.code() == code)
    }

    /// True when the worker wrote its own report (ok or failed).
    pub fn wrote_report(self) -> bool {
        matches!(self, WorkerExit::Ok | WorkerExit::ReportedFailure)
    }
}

impl From<WorkerExit> for std::process::ExitCode {
    fn from(exit: WorkerExit) -> Self {
        // Every code is below 256 (checked by a test).
        std::process::ExitCode::from(exit.code() as u8)
    }
}

/// How a worker process ended, seen from its supervisor: a child's end
/// ([`Ended`]) with the exit code read as a [`WorkerExit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Exited on its own for this cause.
    Exited(WorkerExit),
    /// Exited on its own with a code that is no [`WorkerExit`].
    ExitedWith(i32),
    /// Killed by a signal it did not get from us (crash or `kill`).
    Signaled(i32),
    /// Ran past its time limit; its process group was killed.
    TimedOut(Duration),
    /// A [`Phase`] it announced ran past the phase's limit; its process
    /// group was killed.
    PhaseTimedOut(String, Duration),
    /// `stop` was set; its process group was killed.
    Stopped,
}

impl From<Ended> for WorkerEnd {
    fn from(ended: Ended) -> Self {
        match ended {
            Ended::Exited(code) => match WorkerExit::from_code(code) {
                Some(exit) => WorkerEnd::Exited(exit),
                None => WorkerEnd::ExitedWith(code),
            },
            Ended::Signaled(sig) => WorkerEnd::Signaled(sig),
            Ended::TimedOut(limit) => WorkerEnd::TimedOut(limit),
            Ended::PhaseTimedOut(phase, limit) => WorkerEnd::PhaseTimedOut(phase, limit),
            Ended::Stopped => WorkerEnd::Stopped,
        }
    }
}

impl WorkerEnd {
    /// True when the worker wrote its own report (ok or failed).
    pub fn wrote_report(&self) -> bool {
        matches!(self, WorkerEnd::Exited(exit) if exit.wrote_report())
    }

    /// Words for a failed report, when the worker could not write its own.
    pub fn describe(&self) -> String {
        match self {
            WorkerEnd::Exited(WorkerExit::DiskFull) => "the disk is full: the report could not be written".into(),
            WorkerEnd::Exited(exit) => format!("the worker exited with code {} without writing a report", exit.code()),
            WorkerEnd::ExitedWith(code) => format!("the worker exited with code {code} without writing a report"),
            WorkerEnd::Signaled(libc::SIGILL) => match illegal_instruction_cause() {
                Some(why) => why,
                None => format!(
                    "the worker process was killed by signal {} ({}): libtorch executed an \
                     instruction this CPU does not have; build precisiond against a libtorch made \
                     for this CPU (LIBTORCH)",
                    libc::SIGILL,
                    crate::child::signal_name(libc::SIGILL)
                ),
            },
            WorkerEnd::Signaled(sig) => format!(
                "the worker process was killed by signal {sig} ({}) while measuring the model; \
                 libtorch crashed on this model or the process was killed from outside",
                crate::child::signal_name(*sig)
            ),
            WorkerEnd::TimedOut(limit) => format!(
                "the worker ran past its time limit of {} s and was killed; raise the worker timeout \
                 or lower the per-precision budget",
                limit.as_secs_f64()
            ),
            WorkerEnd::PhaseTimedOut(phase, limit) => format!(
                "the worker's {phase} ran past its limit of {} s and the worker was killed; raise \
                 build_timeout_seconds in the precisiond config (precisiond run: --build-timeout)",
                limit.as_secs_f64()
            ),
            WorkerEnd::Stopped => "precisiond was stopped while this model was being measured; it is measured again at the next start".into(),
        }
    }
}

/// What this CPU lacks that the prebuilt libtorch assumes, read from
/// /proc/cpuinfo (the supervisor loads no libtorch, so it can always say).
fn illegal_instruction_cause() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    crate::hardware::baseline::explain_illegal_instruction(
        &crate::hardware::cpuinfo::parse_cpuinfo(&text),
    )
}

// The prefixes of the messages' lines. Each message is one line, so a
// supervisor reads them as they come and a worker that dies mid-way leaves
// only whole messages.
const LIBTORCH: &str = "LIBTORCH ";
const PHASE: &str = "PHASE ";
const PHASE_END: &str = "PHASE end";
const PROGRESS: &str = "PROGRESS ";
const PARTIAL: &str = "PARTIAL ";

/// What a worker tells its supervisor on stdout, one line each. Anything
/// else it prints there is not a message (text for people: `detect`'s
/// table, a library's chatter).
#[derive(Debug, Clone)]
pub enum WorkerMessage {
    /// The first line a measuring worker prints: the version of the
    /// libtorch it loaded, so a failed report the supervisor writes for it
    /// (after a crash) names it. `LIBTORCH 2.13.0`.
    Libtorch { version: String },
    /// A stretch with a time limit of its own starts (an engine build):
    /// `PHASE engine-build 1800`.
    Phase(Phase),
    /// Back to the worker's own clock: `PHASE end`.
    PhaseEnd,
    /// A step starts: `PROGRESS cpu int8 4/4`.
    Progress(Progress),
    /// The report so far, printed before each step: `PARTIAL <the TOML of
    /// the partial report on one line>`.
    Partial(Box<Partial>),
}

/// A stretch of the worker's work with a time limit of its own (an engine
/// build): while it lasts, the supervisor stops the worker's own clock and
/// holds it to this limit instead. The runner (`crate::child`) defines it.
pub use crate::child::Phase;

/// The step a worker is about to measure: `precision` on `device`, the
/// `step`-th of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub device: Device,
    pub precision: Precision,
    /// From 1.
    pub step: usize,
    pub total: usize,
}

/// `cpu int8 4/4`: how the status file and the logs name a step.
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}/{}",
            self.device,
            self.precision.name(),
            self.step,
            self.total
        )
    }
}

/// The report so far, as the worker prints it before each step: every
/// result finished until then, and the one it is about to measure. A worker
/// that dies leaves the supervisor this, so a crash or a timeout in one
/// precision costs only that precision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// What the step being measured is, as a failed result whose reason the
    /// supervisor fills in with how the worker ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measuring: Option<PrecisionResult>,
    pub report: Report,
}

/// A message that cannot be put on a line.
#[derive(Debug, thiserror::Error)]
#[error("cannot describe the report so far: {0}")]
pub struct UnsayableMessage(#[from] toml::ser::Error);

/// A line that starts as a message does but does not say one: the two ends
/// disagree, or the line was cut.
#[derive(Debug, thiserror::Error)]
pub enum MalformedMessage {
    #[error("the worker's LIBTORCH line names no version")]
    Libtorch,
    #[error("the worker's phase line is not `PHASE <name> <seconds>`: {0:?}")]
    Phase(String),
    #[error(
        "the worker's progress line is not `PROGRESS <device> <precision> <step>/<total>`: {0:?}"
    )]
    Progress(String),
    #[error("the worker's report so far is not valid: {0}")]
    Partial(#[source] toml::de::Error),
}

impl WorkerMessage {
    /// The message as the one line the worker prints (without the newline).
    pub fn to_line(&self) -> Result<String, UnsayableMessage> {
        Ok(match self {
            WorkerMessage::Libtorch { version } => format!("{LIBTORCH}{version}"),
            WorkerMessage::Phase(phase) => {
                format!("{PHASE}{} {}", phase.name, phase.limit.as_secs_f64())
            }
            WorkerMessage::PhaseEnd => PHASE_END.to_owned(),
            WorkerMessage::Progress(progress) => format!("{PROGRESS}{progress}"),
            WorkerMessage::Partial(partial) => partial_line(partial)?,
        })
    }

    /// The message a line of the worker's stdout says: Ok(None) for a line
    /// that is no message, Err for a line that starts as one but does not
    /// say it. The one place where the worker's lines are read.
    pub fn parse(line: &str) -> Result<Option<WorkerMessage>, MalformedMessage> {
        // `PHASE end` first: it shares the prefix of a phase's start.
        if line == PHASE_END {
            return Ok(Some(WorkerMessage::PhaseEnd));
        }
        if let Some(version) = line.strip_prefix(LIBTORCH) {
            let version = version.trim();
            if version.is_empty() {
                return Err(MalformedMessage::Libtorch);
            }
            return Ok(Some(WorkerMessage::Libtorch {
                version: version.to_owned(),
            }));
        }
        if let Some(rest) = line.strip_prefix(PHASE) {
            let phase = parse_phase(rest).ok_or_else(|| MalformedMessage::Phase(line.into()))?;
            return Ok(Some(WorkerMessage::Phase(phase)));
        }
        if let Some(rest) = line.strip_prefix(PROGRESS) {
            let progress =
                parse_progress(rest).ok_or_else(|| MalformedMessage::Progress(line.into()))?;
            return Ok(Some(WorkerMessage::Progress(progress)));
        }
        if let Some(escaped) = line.strip_prefix(PARTIAL) {
            let partial = toml::from_str(&unescape(escaped)).map_err(MalformedMessage::Partial)?;
            return Ok(Some(WorkerMessage::Partial(Box::new(partial))));
        }
        Ok(None)
    }
}

/// `engine-build 1800`: the name may hold spaces, the limit is the last
/// word, in seconds, finite and positive.
fn parse_phase(rest: &str) -> Option<Phase> {
    let (name, limit) = rest.rsplit_once(' ')?;
    let seconds: f64 = limit
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)?;
    Some(Phase {
        name: name.to_owned(),
        limit: Duration::from_secs_f64(seconds),
    })
}

/// `cpu int8 4/4`, spelled as [`Progress`]'s Display writes it.
fn parse_progress(rest: &str) -> Option<Progress> {
    let mut words = rest.split(' ');
    let device = match words.next()? {
        "cpu" => Device::Cpu,
        other => Device::Cuda(other.strip_prefix("cuda:")?.parse().ok()?),
    };
    let precision = words
        .next()
        .and_then(|name| Precision::ALL.into_iter().find(|p| p.name() == name))?;
    let (step, total) = words.next()?.split_once('/')?;
    if words.next().is_some() {
        return None;
    }
    Some(Progress {
        device,
        precision,
        step: step.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// `PARTIAL <the TOML of partial, on one line>`: backslashes, newlines and
/// carriage returns escaped, so one line holds it.
fn partial_line(partial: &Partial) -> Result<String, toml::ser::Error> {
    let text = toml::to_string(partial)?;
    let mut line = String::with_capacity(PARTIAL.len() + text.len() + 64);
    line.push_str(PARTIAL);
    for c in text.chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
    Ok(line)
}

/// The TOML text of a [`partial_line`].
fn unescape(escaped: &str) -> String {
    let mut text = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => text.push('\n'),
            Some('r') => text.push('\r'),
            Some(other) => text.push(other),
            None => {}
        }
    }
    text
}

/// One line of a worker's stdout, read once as it arrives.
#[derive(Debug)]
pub enum WorkerLine {
    Message(WorkerMessage),
    /// A line that starts as a message but does not say one.
    Malformed(MalformedMessage),
    /// A line that is no message, as printed.
    Text(String),
}

impl WorkerLine {
    pub fn parse(line: String) -> WorkerLine {
        match WorkerMessage::parse(&line) {
            Ok(Some(message)) => WorkerLine::Message(message),
            Ok(None) => WorkerLine::Text(line),
            Err(e) => WorkerLine::Malformed(e),
        }
    }
}

/// What the worker was built against, as `precisiond-worker build-info`
/// prints it (TOML), for the tests and for people: the root package links
/// no libtorch and has no build script that could know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBuild {
    /// The version of the libtorch the worker loads.
    pub libtorch: String,
    /// Whether this libtorch has libtorch_cuda.so, which the worker loads
    /// at run time where the CUDA driver reports a GPU.
    pub libtorch_cuda: bool,
}

/// Runs a worker (`crate::child::run_phased`): each stdout line is read
/// once ([`WorkerLine::parse`]) and passed on as read, and a phase the
/// worker announces holds it to the phase's own limit.
pub fn run_worker(
    command: &mut std::process::Command,
    limits: crate::child::Limits,
    mut on_line: impl FnMut(WorkerLine),
) -> std::io::Result<Ended> {
    crate::child::run_phased(command, limits, |line| {
        let line = WorkerLine::parse(line);
        let change = match &line {
            WorkerLine::Message(WorkerMessage::Phase(phase)) => Some(Some(phase.clone())),
            WorkerLine::Message(WorkerMessage::PhaseEnd) => Some(None),
            _ => None,
        };
        on_line(line);
        change
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial() -> Partial {
        let mut report = crate::report::failed_report_for(
            std::path::Path::new("/drop/a\\b\nc.pt"),
            "ab".repeat(32),
            7,
            "line one\nline two with a \\ and \"quotes\"\r".into(),
            crate::report::now(),
            2,
        );
        report.notes.push("tab\there".into());
        let pending = PrecisionResult::not_measured(
            crate::devices::Device::Cpu,
            Precision::Int8,
            crate::report::Status::Failed,
            crate::report::Method::StaticPtq,
            "measuring".into(),
        );
        Partial {
            measuring: Some(pending),
            report,
        }
    }

    fn line(message: &WorkerMessage) -> String {
        message.to_line().unwrap()
    }

    fn parsed(line: &str) -> WorkerMessage {
        WorkerMessage::parse(line).unwrap().unwrap()
    }

    /// Every kind of message, so that a new one is added here too.
    fn every_message() -> Vec<WorkerMessage> {
        let every = vec![
            WorkerMessage::Libtorch {
                version: "2.13.0+cpu".into(),
            },
            WorkerMessage::Phase(Phase {
                name: "engine-build".into(),
                limit: Duration::from_secs(1800),
            }),
            WorkerMessage::PhaseEnd,
            WorkerMessage::Progress(Progress {
                device: Device::Cuda(1),
                precision: Precision::Bf16,
                step: 3,
                total: 8,
            }),
            WorkerMessage::Partial(Box::new(partial())),
        ];
        for message in &every {
            // A match without a wildcard: a new variant fails to compile
            // here until it is listed above.
            match message {
                WorkerMessage::Libtorch { .. }
                | WorkerMessage::Phase(_)
                | WorkerMessage::PhaseEnd
                | WorkerMessage::Progress(_)
                | WorkerMessage::Partial(_) => {}
            }
        }
        every
    }

    #[test]
    fn every_message_round_trips_on_one_line() {
        for message in every_message() {
            let text = line(&message);
            assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
            let back = parsed(&text);
            assert_eq!(line(&back), text, "{message:?}");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&message)
            );
        }
    }

    #[test]
    fn the_wire_text_stays_as_users_and_tests_see_it() {
        let progress = Progress {
            device: Device::Cpu,
            precision: Precision::Int8,
            step: 4,
            total: 4,
        };
        assert_eq!(progress.to_string(), "cpu int8 4/4");
        assert_eq!(
            line(&WorkerMessage::Progress(progress)),
            "PROGRESS cpu int8 4/4"
        );
        let gpu = Progress {
            device: Device::Cuda(0),
            precision: Precision::Bf16,
            step: 3,
            total: 8,
        };
        assert_eq!(
            line(&WorkerMessage::Progress(gpu)),
            "PROGRESS cuda:0 bf16 3/8"
        );
        assert!(matches!(
            parsed("PROGRESS cuda:0 bf16 3/8"),
            WorkerMessage::Progress(p) if p == gpu
        ));
        assert_eq!(
            line(&WorkerMessage::Libtorch {
                version: "2.13.0".into()
            }),
            "LIBTORCH 2.13.0"
        );
        let build = Phase {
            name: "engine-build".into(),
            limit: Duration::from_secs(1800),
        };
        assert_eq!(
            line(&WorkerMessage::Phase(build.clone())),
            "PHASE engine-build 1800"
        );
        assert!(matches!(parsed("PHASE engine-build 1800"), WorkerMessage::Phase(p) if p == build));
        // What tests/daemon.rs's fake worker prints.
        assert!(matches!(
            parsed("PHASE engine-build 0.5"),
            WorkerMessage::Phase(p) if p.limit == Duration::from_millis(500)
        ));
        assert_eq!(line(&WorkerMessage::PhaseEnd), "PHASE end");
        assert!(matches!(parsed("PHASE end"), WorkerMessage::PhaseEnd));
    }

    #[test]
    fn a_partial_report_travels_on_one_line() {
        let partial = partial();
        let text = line(&WorkerMessage::Partial(Box::new(partial.clone())));
        assert!(text.starts_with("PARTIAL "), "{text}");
        let WorkerMessage::Partial(back) = parsed(&text) else {
            panic!("not a partial report: {text}");
        };
        assert_eq!(back.report.error, partial.report.error);
        assert_eq!(back.report.model.file, partial.report.model.file);
        assert_eq!(back.report.notes, partial.report.notes);
        assert_eq!(back.measuring.unwrap().precision, Precision::Int8);
    }

    #[test]
    fn a_malformed_line_of_a_known_kind_is_an_error() {
        assert!(matches!(
            WorkerMessage::parse("PARTIAL not toml"),
            Err(MalformedMessage::Partial(_))
        ));
        for bad in [
            "PHASE engine-build soon",
            "PHASE engine-build -3",
            "PHASE engine-build inf",
            "PHASE 1800",
        ] {
            assert!(
                matches!(WorkerMessage::parse(bad), Err(MalformedMessage::Phase(_))),
                "{bad}"
            );
        }
        for bad in [
            "PROGRESS cpu int8",
            "PROGRESS gpu int8 1/4",
            "PROGRESS cpu int4 1/4",
            "PROGRESS cpu int8 one/4",
            "PROGRESS cpu int8 1/4 more",
        ] {
            assert!(
                matches!(
                    WorkerMessage::parse(bad),
                    Err(MalformedMessage::Progress(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            WorkerMessage::parse("LIBTORCH  "),
            Err(MalformedMessage::Libtorch)
        ));
        let e = WorkerMessage::parse("PARTIAL [").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the worker's report so far is not valid: "),
            "{e}"
        );
    }

    #[test]
    fn an_ordinary_line_is_no_message() {
        for text in [
            "",
            "something else",
            "PROGRESS",
            "PHASE",
            "partial report",
            " PROGRESS cpu int8 1/4",
            "cpu int8 1/4",
        ] {
            assert!(WorkerMessage::parse(text).unwrap().is_none(), "{text:?}");
            assert!(matches!(WorkerLine::parse(text.into()), WorkerLine::Text(t) if t == text));
        }
        assert!(matches!(
            WorkerLine::parse("PHASE end".into()),
            WorkerLine::Message(WorkerMessage::PhaseEnd)
        ));
        assert!(matches!(
            WorkerLine::parse("PARTIAL x".into()),
            WorkerLine::Malformed(MalformedMessage::Partial(_))
        ));
    }

    #[test]
    fn exit_codes_map_both_ways() {
        let codes: Vec<i32> = WorkerExit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 10, 11]);
        for exit in WorkerExit::ALL {
            assert_eq!(WorkerExit::from_code(exit.code()), Some(exit));
            assert!((0..256).contains(&exit.code()));
            assert_eq!(
                WorkerEnd::from(Ended::Exited(exit.code())),
                WorkerEnd::Exited(exit)
            );
        }
        for other in [-1, 2, 9, 12, 139] {
            assert_eq!(WorkerExit::from_code(other), None);
            assert_eq!(
                WorkerEnd::from(Ended::Exited(other)),
                WorkerEnd::ExitedWith(other)
            );
        }
        let wrote: Vec<bool> = WorkerExit::ALL.iter().map(|e| e.wrote_report()).collect();
        assert_eq!(wrote, [true, false, true, false]);
        assert!(!WorkerEnd::Stopped.wrote_report());
        assert!(!WorkerEnd::ExitedWith(0).wrote_report());
    }

    #[test]
    fn a_worker_end_is_described_for_the_failed_report() {
        assert_eq!(
            WorkerEnd::Exited(WorkerExit::DiskFull).describe(),
            "the disk is full: the report could not be written"
        );
        assert_eq!(
            WorkerEnd::ExitedWith(3).describe(),
            "the worker exited with code 3 without writing a report"
        );
        assert_eq!(
            WorkerEnd::Exited(WorkerExit::Error).describe(),
            "the worker exited with code 1 without writing a report"
        );
        let killed = WorkerEnd::from(Ended::Signaled(libc::SIGKILL)).describe();
        assert!(killed.contains("signal 9 (SIGKILL)"), "{killed}");
        assert_eq!(
            WorkerEnd::from(Ended::PhaseTimedOut(
                "engine-build".into(),
                Duration::from_secs(2)
            )),
            WorkerEnd::PhaseTimedOut("engine-build".into(), Duration::from_secs(2))
        );
    }

    #[test]
    fn a_workers_lines_come_parsed_and_its_phases_stop_its_clock() {
        let mut lines = Vec::new();
        // 1.2 s inside the phase, far less outside it: within 0.8 s.
        let script = "echo 'PHASE engine-build 30'; sleep 1.2; echo 'PHASE end'; \
                      echo 'PROGRESS cpu fp32 1/1'; echo 'PROGRESS soon'; echo done";
        let ended = run_worker(
            std::process::Command::new("sh")
                .args(["-c", script])
                .stdout(std::process::Stdio::piped()),
            crate::child::Limits {
                timeout: Some(std::time::Duration::from_millis(800)),
                stop: None,
            },
            |l| lines.push(l),
        )
        .unwrap();
        assert_eq!(ended, Ended::Exited(0));
        assert!(
            matches!(
                lines.as_slice(),
                [
                    WorkerLine::Message(WorkerMessage::Phase(_)),
                    WorkerLine::Message(WorkerMessage::PhaseEnd),
                    WorkerLine::Message(WorkerMessage::Progress(_)),
                    WorkerLine::Malformed(_),
                    WorkerLine::Text(done),
                ] if done == "done"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn a_phase_past_its_limit_ends_the_worker() {
        let ended = run_worker(
            std::process::Command::new("sh")
                .args(["-c", "echo 'PHASE engine-build 0.3'; sleep 30"])
                .stdout(std::process::Stdio::piped()),
            crate::child::Limits::default(),
            |_| {},
        )
        .unwrap();
        assert_eq!(
            ended,
            Ended::PhaseTimedOut("engine-build".into(), std::time::Duration::from_millis(300))
        );
    }
}
