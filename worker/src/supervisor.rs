//! The messages this worker prints for its supervisor on stdout (their
//! format lives in `precisiond_core::protocol`, shared by both ends).

use precisiond_core::protocol::{Phase, WorkerMessage};
use std::io::Write;

/// A message on stdout for the supervisor, flushed at once: it may be the
/// last thing this process does.
pub fn send(message: &WorkerMessage) {
    let line = match message.to_line() {
        Ok(line) => line,
        // The supervisor goes without it: a report so far it lacks costs
        // only the results before a crash, never the measurement.
        Err(e) => {
            log::warn!("{e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs `work` as `phase`: the supervisor holds it to the phase's limit
/// instead of the worker's own (an engine build may rightly take longer
/// than a whole measurement).
pub fn in_phase<T>(phase: &Phase, work: impl FnOnce() -> T) -> T {
    send(&WorkerMessage::Phase(phase.clone()));
    let done = work();
    send(&WorkerMessage::PhaseEnd);
    done
}
