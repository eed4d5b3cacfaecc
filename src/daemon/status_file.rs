//! The status file `.precisiond/status.toml` in each drop folder: what the
//! daemon is doing, for people and scripts without systemd. Written
//! atomically (temporary file and rename), so a reader never sees half of
//! one. The one-line summary systemd shows (STATUS=) is made here too, from
//! the same snapshot, so the two never disagree.

use precisiond_core::report::{self, Status};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use toml::value::Datetime;

/// How many finished jobs the status file lists.
pub const KEEP_FINISHED: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Current {
    pub model: String,
    pub started: Datetime,
    /// The worker's last progress line, e.g. "cpu bf16 2/4".
    pub step: String,
    #[serde(skip)]
    pub path: PathBuf,
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
            let mut line = format!("benchmarking {}: {}", c.model, short_step(&c.step));
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

/// "cpu bf16 2/4" -> "bf16 2/4": the device is named only when it is not the CPU.
fn short_step(step: &str) -> &str {
    step.strip_prefix("cpu ").unwrap_or(step)
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
    precisiond_core::fsutil::ensure_state_dir(&dir)?;
    let path = dir.join("status.toml");
    precisiond_core::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
