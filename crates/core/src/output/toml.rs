//! Writing a [`Report`] as TOML: the file beside each model that scripts
//! read. The report's shape (keys, types) is the data model's, in
//! `crate::report`; this is only how it reaches the disk.

use crate::report::Report;
use std::path::Path;

/// The report as TOML text.
pub fn render(report: &Report) -> String {
    ::toml::to_string(report).expect("a report always serialises to TOML")
}

/// Writes the report to `path` atomically, so a reader (a script, the
/// daemon deciding whether a model is done) never sees half of one.
pub fn write(report: &Report, path: &Path) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, render(report).as_bytes())
}
