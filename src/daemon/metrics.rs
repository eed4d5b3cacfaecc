//! The metrics textfile (`textfile_dir`): the reports beside the models of
//! the drop folders, read again only when they change (size or time), so
//! that rewriting the file costs a folder listing and a few `stat`s.

use crate::daemon::prometheus::{self, DaemonFacts};
use crate::daemon::watch::{self, Kind};
use precisiond_core::report::Report;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Reports larger than this are not read: no report precisiond writes
/// comes near it, and the drop folder is untrusted.
const MAX_REPORT_BYTES: u64 = 16 << 20;

#[derive(Default)]
pub struct Metrics {
    cache: HashMap<PathBuf, Cached>,
    /// The last write's error, logged once until it changes.
    last_error: Option<String>,
}

struct Cached {
    modified: SystemTime,
    len: u64,
    /// None: not a report precisiond can read.
    report: Option<Report>,
}

impl Metrics {
    /// Rewrites `dir/precisiond.prom` from the reports in `folders` and `facts`.
    pub fn write(&mut self, dir: &Path, folders: &[PathBuf], facts: &DaemonFacts) {
        let reports = self.reports(folders);
        let text = prometheus::exposition(&reports, facts);
        match prometheus::write_textfile(dir, &text) {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    log::info!(
                        "metrics file {:?} written again",
                        dir.join(prometheus::FILE_NAME)
                    );
                }
            }
            Err(e) => {
                let message = format!(
                    "cannot write the metrics file {:?}: {e} (textfile_dir must be a folder \
                     precisiond may write to; under systemd, a ReadWritePaths= line for it)",
                    dir.join(prometheus::FILE_NAME)
                );
                if self.last_error.as_deref() != Some(message.as_str()) {
                    log::warn!("{message}");
                    self.last_error = Some(message);
                }
            }
        }
    }

    /// The readable reports beside a model, each with the model's file
    /// name, folder by folder and by name within a folder.
    pub fn reports(&mut self, folders: &[PathBuf]) -> Vec<(String, Report)> {
        let mut out = Vec::new();
        let mut present = HashSet::new();
        for folder in folders {
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            // Regular files only (a DirEntry's type does not follow links).
            let mut files: HashSet<OsString> = HashSet::new();
            let mut reports: Vec<(PathBuf, PathBuf, std::fs::Metadata)> = Vec::new();
            for entry in entries.filter_map(Result::ok) {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let path = entry.path();
                if let Kind::Report(model) = watch::kind(&path) {
                    reports.push((path, model, meta));
                }
                files.insert(entry.file_name());
            }
            reports.sort_by(|a, b| a.1.cmp(&b.1));
            for (path, model, meta) in reports {
                if !model.file_name().is_some_and(|n| files.contains(n)) {
                    continue;
                }
                present.insert(path.clone());
                if let Some(report) = self.read(path, &meta) {
                    out.push((precisiond_core::fsutil::file_name(&model), report.clone()));
                }
            }
        }
        self.cache.retain(|p, _| present.contains(p));
        out
    }

    fn read(&mut self, path: PathBuf, meta: &std::fs::Metadata) -> Option<&Report> {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let len = meta.len();
        let fresh = self
            .cache
            .get(&path)
            .is_some_and(|c| c.modified == modified && c.len == len);
        if !fresh {
            let report = (len <= MAX_REPORT_BYTES)
                .then(|| precisiond_core::fsutil::read(&path, true).ok())
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| match toml::from_str::<Report>(&text) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        log::debug!("metrics: {path:?} is not a report: {e}");
                        None
                    }
                });
            self.cache.insert(
                path.clone(),
                Cached {
                    modified,
                    len,
                    report,
                },
            );
        }
        self.cache.get(&path).and_then(|c| c.report.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"schema_version = 1
status = "failed"
error = "boom"

[model]
file = "a.pt"
sha256 = "00"
bytes = 1
format = "torchscript"

[run]
started = 2026-01-01T00:00:00Z
finished = 2026-01-01T00:00:01Z
precisiond = "0.1.0"
libtorch = "2.13.0"
threads = 1
host = "h"
max_seconds = 1.0
target_rel_ci = 0.01
"#;

    #[test]
    fn reports_beside_a_model_are_read_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.pt"), "m").unwrap();
        std::fs::write(d.join("a.pt.report.toml"), REPORT).unwrap();
        // No model beside it: not counted.
        std::fs::write(d.join("gone.pt.report.toml"), REPORT).unwrap();
        // Not a report.
        std::fs::write(d.join("b.pt"), "m").unwrap();
        std::fs::write(d.join("b.pt.report.toml"), "not = [toml").unwrap();
        // A link is never followed.
        std::fs::write(d.join("c.pt"), "m").unwrap();
        std::os::unix::fs::symlink(d.join("a.pt.report.toml"), d.join("c.pt.report.toml")).unwrap();
        let mut m = Metrics::default();
        let folders = vec![d.to_path_buf()];
        let found = m.reports(&folders);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "a.pt");
        assert_eq!(found[0].1.error.as_deref(), Some("boom"));
        assert_eq!(m.cache.len(), 2);
        std::fs::remove_file(d.join("a.pt")).unwrap();
        assert!(m.reports(&folders).is_empty());
        assert_eq!(m.cache.len(), 1);
    }
}
