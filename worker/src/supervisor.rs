//! The lines this worker prints for its supervisor on stdout (their format
//! lives in `precisiond_core::protocol`, shared by both ends).

use precisiond_core::protocol::{self, Phase};
use std::io::Write;

/// A line on stdout for the supervisor, flushed at once: it may be the
/// last thing this process does.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `work` as `phase`: the supervisor holds it to the phase's limit
/// instead of the worker's own (an engine build may rightly take longer
/// than a whole measurement).
pub fn in_phase<T>(phase: &Phase, work: impl FnOnce() -> T) -> T {
    say(&protocol::phase_line(phase));
    let done = work();
    say(protocol::phase_end_line());
    done
}
