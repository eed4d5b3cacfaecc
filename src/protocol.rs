//! What passes between the supervisor and a worker process: exit codes,
//! the progress lines on the worker's stdout, and the worker's build facts.
//! Both binaries use these definitions, so the two ends cannot drift apart.

use serde::{Deserialize, Serialize};

/// Exit codes between worker and supervisor.
pub mod exit {
    /// The report was written and says ok.
    pub const OK: i32 = 0;
    /// Something the user must fix; message on stderr.
    pub const ERROR: i32 = 1;
    /// The report was written and says failed.
    pub const REPORTED_FAILURE: i32 = 10;
}

const PROGRESS: &str = "PROGRESS ";
const LIBTORCH: &str = "LIBTORCH ";

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
    }
}
