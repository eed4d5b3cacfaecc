//! The host memory a measurement used: the worker's peak resident set size
//! (VmHWM in /proc/self/status), reset before each precision through
//! /proc/self/clear_refs so each result carries its own peak.

use std::path::Path;

const STATUS: &str = "/proc/self/status";
const CLEAR_REFS: &str = "/proc/self/clear_refs";

/// VmHWM (peak resident set size) in bytes from the text of a
/// /proc/PID/status file. None when the line is missing or malformed.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    parse_kib_line(status, "VmHWM:")
}

/// VmRSS (current resident set size) in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_kib_line(status, "VmRSS:")
}

fn parse_kib_line(status: &str, key: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
    let mut parts = rest.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | Some("KB") | Some("kiB") => value.checked_mul(1024),
        _ => None,
    }
}

/// This process's peak resident set size in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    std::fs::read_to_string(STATUS)
        .ok()
        .and_then(|s| parse_vm_hwm(&s))
}

/// How the peak RSS of one measurement is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakScope {
    /// The peak was reset to the current RSS before the measurement.
    SinceReset,
    /// The kernel refused the reset: the value is the process's peak since
    /// it started (it includes whatever ran before).
    SinceStart,
}

/// Resets the peak RSS to the current RSS (Linux 4.0+: writing "5" to
/// /proc/self/clear_refs). Says which scope the next reading has.
pub fn reset_peak_rss() -> PeakScope {
    reset_peak_rss_at(Path::new(CLEAR_REFS))
}

fn reset_peak_rss_at(path: &Path) -> PeakScope {
    match std::fs::write(path, b"5") {
        Ok(()) => PeakScope::SinceReset,
        Err(e) => {
            log::debug!("cannot reset the peak RSS through {}: {e}", path.display());
            PeakScope::SinceStart
        }
    }
}

/// The note a result gets when its peak RSS could not be scoped to it.
pub const SINCE_START_NOTE: &str = "peak_host_rss_bytes is the worker's peak since it started: \
     the kernel refused to reset it (/proc/self/clear_refs), so it may include earlier precisions";

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_SAMPLE: &str = "Name:\tprecisiond-work\nUmask:\t0022\nState:\tR (running)\n\
        VmPeak:\t 3581920 kB\nVmSize:\t 3516384 kB\nVmLck:\t       0 kB\nVmHWM:\t  612344 kB\n\
        VmRSS:\t  598020 kB\nRssAnon:\t  200000 kB\n";

    #[test]
    fn reads_the_peak_and_current_rss_in_bytes() {
        assert_eq!(parse_vm_hwm(STATUS_SAMPLE), Some(612_344 * 1024));
        assert_eq!(parse_vm_rss(STATUS_SAMPLE), Some(598_020 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t12 pages\n"), None);
    }

    #[test]
    fn the_reset_brings_the_peak_down_to_the_current_rss() {
        // Touch 128 MiB, free it: the peak stays up until it is reset.
        let big = vec![1_u8; 128 << 20];
        assert_eq!(
            big.iter().step_by(4096).map(|&b| b as usize).sum::<usize>(),
            (128 << 20) / 4096
        );
        drop(big);
        let before = peak_rss_bytes().expect("Linux has /proc/self/status");
        match reset_peak_rss() {
            PeakScope::SinceReset => {
                let after = peak_rss_bytes().unwrap();
                assert!(
                    after + (64 << 20) < before,
                    "peak {before} -> {after} after the reset"
                );
            }
            // A kernel or sandbox that refuses the reset: the caller notes it.
            PeakScope::SinceStart => assert!(peak_rss_bytes().unwrap() >= before),
        }
    }

    #[test]
    fn a_refused_reset_says_the_value_is_since_start() {
        assert_eq!(
            reset_peak_rss_at(Path::new("/nonexistent/clear_refs")),
            PeakScope::SinceStart
        );
    }
}
