//! The status file `.precisiond/status.toml` in each drop folder: what the
//! daemon is doing, for people and scripts without systemd. Written
//! atomically (temporary file and rename), so a reader never sees half of
//! one. The one-line summary systemd shows (STATUS=) is made here too, from
//! the same snapshot, so the two never disagree.

use precisiond_core::devices::Device;
use precisiond_core::protocol::Progress;
use precisiond_core::report::{self, Status};
use serde::{Serialize, Serializer};
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::value::Datetime;

/// How many finished jobs the status file lists.
pub const KEEP_FINISHED: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Current {
    pub model: String,
    pub started: Datetime,
    /// The step the worker measures, "cpu bf16 2/4" in the file.
    pub step: Step,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Before the worker's first step: deciding, waiting for a quiet
    /// machine, loading the model.
    Starting,
    /// The worker's last progress message.
    Measuring(Progress),
}

/// "starting", or the step as the worker names it: "cpu bf16 2/4".
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Starting => f.write_str("starting"),
            Step::Measuring(progress) => progress.fmt(f),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Step {
    /// For the one-line status: "bf16 2/4", the device named only when it
    /// is not the CPU ("cuda:0 bf16 2/4").
    fn short(&self) -> String {
        match self {
            Step::Measuring(p) if p.device == Device::Cpu => {
                format!("{} {}/{}", p.precision.name(), p.step, p.total)
            }
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub model: String,
    pub status: Status,
    pub finished: Datetime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Serialize)]
struct FolderStatus<'a> {
    updated: Datetime,
    pid: u32,
    /// idle, benchmarking, disk full (a report waits for space), stopping
    /// or stopped.
    state: &'a str,
    /// The same line systemd shows.
    status: &'a str,
    /// Reports in this folder.
    reports: usize,
    /// Models of this folder waiting, next first.
    queue: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<&'a Current>,
    /// Last finished jobs of this folder, most recent first.
    last: Vec<&'a Finished>,
}

/// Everything the status files and the systemd STATUS= line say.
pub struct Snapshot<'a> {
    pub state: &'a str,
    pub queue: Vec<&'a Path>,
    pub current: Option<&'a Current>,
    pub finished: &'a VecDeque<Finished>,
}

/// The one-line status, as `systemctl status` shows it.
pub fn line(s: &Snapshot, reports: usize) -> String {
    match (s.state, s.current) {
        ("stopping" | "stopped", _) => s.state.to_owned(),
        ("disk full", _) => {
            let mut line = "disk full: reports wait for free space".to_owned();
            if !s.queue.is_empty() {
                line.push_str(&format!(" ({} queued)", s.queue.len()));
            }
            line
        }
        (_, Some(c)) => {
            let mut line = format!("benchmarking {}: {}", c.model, c.step.short());
            if !s.queue.is_empty() {
                line.push_str(&format!(" ({} queued)", s.queue.len()));
            }
            line
        }
        _ if !s.queue.is_empty() => format!("{} queued, {}", s.queue.len(), reports_word(reports)),
        _ => format!("idle, {}", reports_word(reports)),
    }
}

fn reports_word(n: usize) -> String {
    if n == 1 {
        "1 report".into()
    } else {
        format!("{n} reports")
    }
}

/// Reports (regular `*.report.toml` files) in `folder`.
pub fn count_reports(folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            matches!(
                crate::daemon::watch::kind(&e.path()),
                crate::daemon::watch::Kind::Report(_)
            )
        })
        .count()
}

/// Writes `folder`'s status file.
pub fn write(folder: &Path, s: &Snapshot, line: &str) -> Result<(), String> {
    let in_folder = |p: &Path| p.parent() == Some(folder);
    let status = FolderStatus {
        updated: report::now(),
        pid: std::process::id(),
        state: s.state,
        status: line,
        reports: count_reports(folder),
        queue: s
            .queue
            .iter()
            .filter(|p| in_folder(p))
            .map(|p| precisiond_core::fsutil::file_name(p))
            .collect(),
        current: s.current.filter(|c| in_folder(&c.path)),
        last: s.finished.iter().filter(|f| in_folder(&f.path)).collect(),
    };
    let text = toml::to_string(&status).map_err(|e| format!("cannot write the status: {e}"))?;
    let dir = precisiond_core::fsutil::state_dir(folder);
    precisiond_core::fsutil::ensure_state_dir(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("status.toml");
    precisiond_core::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use precisiond_core::precision::Precision;

    fn current(step: Step) -> Current {
        Current {
            model: "m.pt".into(),
            started: report::now(),
            step,
            path: PathBuf::from("/drop/m.pt"),
        }
    }

    fn progress(device: Device) -> Step {
        Step::Measuring(Progress {
            device,
            precision: Precision::Bf16,
            step: 2,
            total: 4,
        })
    }

    fn status_line(step: Step, queued: usize) -> String {
        let current = current(step);
        let finished = VecDeque::new();
        let queue = vec![Path::new("/drop/q.pt"); queued];
        let snapshot = Snapshot {
            state: "benchmarking",
            queue,
            current: Some(&current),
            finished: &finished,
        };
        line(&snapshot, 0)
    }

    #[test]
    fn the_step_is_written_as_the_worker_names_it() {
        #[derive(Serialize)]
        struct File {
            current: Current,
        }
        let text = |step| {
            toml::to_string(&File {
                current: current(step),
            })
            .unwrap()
        };
        assert!(
            text(progress(Device::Cpu)).contains("step = \"cpu bf16 2/4\"\n"),
            "{}",
            text(progress(Device::Cpu))
        );
        assert!(text(progress(Device::Cuda(1))).contains("step = \"cuda:1 bf16 2/4\"\n"));
        assert!(text(Step::Starting).contains("step = \"starting\"\n"));
    }

    #[test]
    fn the_status_line_names_the_device_only_when_not_the_cpu() {
        assert_eq!(
            status_line(progress(Device::Cpu), 0),
            "benchmarking m.pt: bf16 2/4"
        );
        assert_eq!(
            status_line(progress(Device::Cuda(0)), 2),
            "benchmarking m.pt: cuda:0 bf16 2/4 (2 queued)"
        );
        assert_eq!(
            status_line(Step::Starting, 0),
            "benchmarking m.pt: starting"
        );
    }
}
