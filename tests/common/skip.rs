//! How a test says that this machine let it check nothing, or less than it
//! checks elsewhere (no GPU, not root, no avx512_bf16, a busy machine...):
//! never a silent pass. A line `SKIPPED <test>: <why>` goes to stderr,
//! which a failing run or `--nocapture` shows, and is appended to
//! `target/<profile>/skipped-tests.txt`, which `make test` empties first
//! and prints at the end, so CI's log lists every skip.
//!
//! Used by the root package's integration tests (through `common`) and,
//! included by path, by the unit tests of precisiond-core and the worker:
//! it needs nothing but std.

#![allow(dead_code)]

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

/// The name of the log, in the profile folder (`target/release`).
pub const LOG_NAME: &str = "skipped-tests.txt";

/// The calling test checked nothing here, because `why`; the caller
/// returns: `return skip("not root: mounting a tmpfs needs root")`.
pub fn skip(why: impl Display) {
    record(&format!("SKIPPED {}: {why}", test_name()));
}

/// The calling test checked what this machine allows, but not `what`,
/// because `why`; it carries on.
pub fn skip_part(what: impl Display, why: impl Display) {
    record(&format!("SKIPPED {} (in part: {what}): {why}", test_name()));
}

/// libtest names each test's thread after the test (with its module path
/// inside the binary), also with `--test-threads=1`.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test off its own thread")
        .to_owned()
}

/// The test binary (`daemon-0123abcd` less its hash), so that the log
/// tells `tests/daemon.rs` from a unit test of the same name.
fn binary() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|e| e.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
        _ => stem,
    }
}

/// target/<profile>/skipped-tests.txt: test binaries live in
/// target/<profile>/deps.
pub fn log_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.join(LOG_NAME))
}

fn record(line: &str) {
    eprintln!("{line}");
    let Some(path) = log_path() else {
        return;
    };
    // One write of a whole line with O_APPEND: lines from test binaries
    // running at once do not interleave. A log that cannot be written
    // loses the summary line only; stderr already has it.
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    if let Ok(mut file) = opened {
        let _ = file.write_all(format!("[{}] {line}\n", binary()).as_bytes());
    }
}
