//! What passes between the supervisor and a worker process: exit codes,
//! the lines on the worker's stdout (progress, the report so far), and the
//! worker's build facts.
//! Both binaries use these definitions, so the two ends cannot drift apart.

use crate::report::{PrecisionResult, Report};
use serde::{Deserialize, Serialize};

/// Exit codes between worker and supervisor.
pub mod exit {
    /// The report was written and says ok.
    pub const OK: i32 = 0;
    /// Something the user must fix; message on stderr.
    pub const ERROR: i32 = 1;
    /// The report was written and says failed.
    pub const REPORTED_FAILURE: i32 = 10;
    /// The report could not be written: the disk (or quota) is full.
    pub const DISK_FULL: i32 = 11;
}

const PROGRESS: &str = "PROGRESS ";
const LIBTORCH: &str = "LIBTORCH ";
const PARTIAL: &str = "PARTIAL ";
const PHASE: &str = "PHASE ";
const PHASE_END: &str = "PHASE end";

/// The first line a measuring worker prints: the libtorch it loaded, so a
/// failed report the supervisor writes for it (after a crash) names it.
pub fn libtorch_line(version: &str) -> String {
    format!("{LIBTORCH}{version}")
}

/// The version a [`libtorch_line`] names; None for other lines.
pub fn parse_libtorch(line: &str) -> Option<&str> {
    line.strip_prefix(LIBTORCH).map(str::trim)
}

/// The line a worker prints before it measures step `index` of `total`:
/// `PROGRESS cpu int8 4/4`.
pub fn progress_line(device: &str, precision: &str, index: usize, total: usize) -> String {
    format!("{PROGRESS}{device} {precision} {index}/{total}")
}

/// The step a progress line names (`cpu int8 4/4`); None for other lines.
pub fn parse_progress(line: &str) -> Option<&str> {
    line.strip_prefix(PROGRESS)
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

/// `PARTIAL <the TOML of partial, on one line>`: backslashes, newlines and
/// carriage returns escaped, so one line holds it.
pub fn partial_line(partial: &Partial) -> Result<String, String> {
    let text =
        toml::to_string(partial).map_err(|e| format!("cannot describe the report so far: {e}"))?;
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

/// The report a [`partial_line`] carries; None for other lines.
pub fn parse_partial(line: &str) -> Option<Result<Partial, String>> {
    let escaped = line.strip_prefix(PARTIAL)?;
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
    Some(toml::from_str(&text).map_err(|e| format!("the worker's report so far is not valid: {e}")))
}

/// A stretch of the worker's work with a time limit of its own (an engine
/// build), announced on a line of its own: while it lasts, the supervisor
/// stops the worker's own clock and holds it to this limit instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// What it is, for messages: `engine-build`.
    pub name: String,
    pub limit: std::time::Duration,
}

/// `PHASE engine-build 1800`: the phase starts.
pub fn phase_line(phase: &Phase) -> String {
    format!("{PHASE}{} {}", phase.name, phase.limit.as_secs_f64())
}

/// `PHASE end`: back to the worker's own clock.
pub fn phase_end_line() -> &'static str {
    PHASE_END
}

/// What a phase line says: Some(Some(phase)) for a start, Some(None) for
/// the end, None for other lines.
pub fn parse_phase(line: &str) -> Option<Option<Phase>> {
    if line == PHASE_END {
        return Some(None);
    }
    let (name, limit) = line.strip_prefix(PHASE)?.rsplit_once(' ')?;
    let seconds: f64 = limit
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)?;
    Some(Some(Phase {
        name: name.to_owned(),
        limit: std::time::Duration::from_secs_f64(seconds),
    }))
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

/// How a worker ended, in words for a failed report.
impl crate::child::Ended {
    /// Words for a failed report, when the worker could not write its own.
    pub fn describe(&self) -> String {
        match self {
            crate::child::Ended::Exited(exit::DISK_FULL) => "the disk is full: the report could not be written".into(),
            crate::child::Ended::Exited(code) => format!("the worker exited with code {code} without writing a report"),
            crate::child::Ended::Signaled(libc::SIGILL) => match illegal_instruction_cause() {
                Some(why) => why,
                None => format!(
                    "the worker process was killed by signal {} ({}): libtorch executed an \
                     instruction this CPU does not have; build precisiond against a libtorch made \
                     for this CPU (LIBTORCH)",
                    libc::SIGILL,
                    crate::child::signal_name(libc::SIGILL)
                ),
            },
            crate::child::Ended::Signaled(sig) => format!(
                "the worker process was killed by signal {sig} ({}) while measuring the model; \
                 libtorch crashed on this model or the process was killed from outside",
                crate::child::signal_name(*sig)
            ),
            crate::child::Ended::TimedOut(limit) => format!(
                "the worker ran past its time limit of {} s and was killed; raise the worker timeout \
                 or lower the per-precision budget",
                limit.as_secs_f64()
            ),
            crate::child::Ended::PhaseTimedOut(phase, limit) => format!(
                "the worker's {phase} ran past its limit of {} s and the worker was killed; raise \
                 build_timeout_seconds in the precisiond config (precisiond run: --build-timeout)",
                limit.as_secs_f64()
            ),
            crate::child::Ended::Stopped => "precisiond was stopped while this model was being measured; it is measured again at the next start".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_round_trip() {
        let line = progress_line("cuda:0", "bf16", 3, 8);
        assert_eq!(line, "PROGRESS cuda:0 bf16 3/8");
        assert_eq!(parse_progress(&line), Some("cuda:0 bf16 3/8"));
        assert_eq!(parse_progress("something else"), None);
        assert_eq!(parse_libtorch(&libtorch_line("2.13.0")), Some("2.13.0"));
        assert_eq!(parse_libtorch(&line), None);
        let build = Phase {
            name: "engine-build".into(),
            limit: std::time::Duration::from_secs(1800),
        };
        assert_eq!(phase_line(&build), "PHASE engine-build 1800");
        assert_eq!(parse_phase(&phase_line(&build)), Some(Some(build)));
        assert_eq!(parse_phase(phase_end_line()), Some(None));
        assert_eq!(parse_phase("PHASE engine-build soon"), None);
        assert_eq!(parse_phase(&line), None);
    }

    #[test]
    fn a_partial_report_travels_on_one_line() {
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
            "cpu",
            crate::precision::Precision::Int8,
            crate::report::Status::Failed,
            crate::report::Method::StaticPtq,
            "measuring".into(),
        );
        let partial = Partial {
            measuring: Some(pending),
            report,
        };
        let line = partial_line(&partial).unwrap();
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let back = parse_partial(&line).unwrap().unwrap();
        assert_eq!(back.report.error, partial.report.error);
        assert_eq!(back.report.model.file, partial.report.model.file);
        assert_eq!(back.report.notes, partial.report.notes);
        assert_eq!(
            back.measuring.unwrap().precision,
            crate::precision::Precision::Int8
        );
        assert!(parse_partial("PROGRESS cpu fp32 1/4").is_none());
        assert!(parse_partial("PARTIAL not toml").unwrap().is_err());
    }
}
