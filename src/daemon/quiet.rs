//! The wait for a quiet machine before a job: a timing taken while the
//! device does its real work is not the model's speed. Runs in the job's
//! thread, never the daemon's main one.
//!
//! The decision (`wait`) takes its samples, its clock and the stop flag as
//! functions, so it is tested without /proc/stat or sleeping;
//! `wait_for_quiet` plugs in the real ones.

use precisiond_core::conditions::cpu;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one look at /proc/stat lasts: long enough for the kernel's
/// 10 ms ticks to say something (25 per CPU), short enough not to delay a
/// job on a quiet machine by much (every job takes one look).
const SAMPLE: Duration = Duration::from_millis(250);

/// Waits up to `max_wait` for other processes to use less than
/// `threshold` of the CPUs this process may run on. Returns None when the
/// machine is quiet (or the daemon stops, or /proc/stat cannot be read),
/// else the share they used when the wait ran out: the job then measures
/// anyway and its report says so. A zero `max_wait` does not look at all.
pub fn wait_for_quiet(
    model: &Path,
    threshold: f64,
    max_wait: Duration,
    stop: &AtomicBool,
) -> Option<f64> {
    if max_wait.is_zero() {
        return None;
    }
    let cpus = cpu::allowed_cpus();
    wait(
        model,
        threshold,
        max_wait,
        // Each look lasts SAMPLE: the loop needs no sleep of its own.
        || cpu::busy_share(Path::new("/"), cpus.as_deref(), SAMPLE),
        Instant::now,
        || stop.load(Ordering::SeqCst),
    )
}

/// `wait_for_quiet` with its outside world passed in: `sample` gives the
/// share of the CPUs others used (and takes its time doing so), `now` the
/// time, `stopping` whether the daemon stops.
fn wait<E: std::fmt::Display>(
    model: &Path,
    threshold: f64,
    max_wait: Duration,
    mut sample: impl FnMut() -> Result<f64, E>,
    now: impl Fn() -> Instant,
    stopping: impl Fn() -> bool,
) -> Option<f64> {
    if max_wait.is_zero() {
        return None;
    }
    let start = now();
    let mut logged = false;
    loop {
        let share = match sample() {
            Ok(share) => share,
            Err(e) => {
                log::warn!("cannot tell whether the machine is busy ({e}); measuring {model:?}");
                return None;
            }
        };
        if share <= threshold {
            if logged {
                log::info!(
                    "the machine is quiet ({:.0}% of the CPUs used by others) after {:.0} s; measuring {model:?}",
                    share * 100.0,
                    now().saturating_duration_since(start).as_secs_f64()
                );
            }
            return None;
        }
        if stopping() {
            return None;
        }
        if now().saturating_duration_since(start) >= max_wait {
            log::warn!(
                "the machine stayed busy ({:.0}% of the CPUs used by others, busy_threshold {:.0}%) \
                 for busy_wait_seconds = {:.0}; measuring {model:?} anyway, its report says so",
                share * 100.0,
                threshold * 100.0,
                max_wait.as_secs_f64()
            );
            return Some(share);
        }
        if !logged {
            log::info!(
                "waiting up to {:.0} s for a quiet machine before measuring {model:?}: others use \
                 {:.0}% of the CPUs (busy_threshold {:.0}%)",
                max_wait.as_secs_f64(),
                share * 100.0,
                threshold * 100.0
            );
            logged = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Runs `wait` over `shares` (one per look, each look taking SAMPLE of
    /// a fake clock); returns its answer and how many looks it took.
    fn run(
        shares: &[Result<f64, &str>],
        max_wait: Duration,
        stop_after: usize,
    ) -> (Option<f64>, usize) {
        let t0 = Instant::now();
        let looks = Cell::new(0usize);
        let answer = wait(
            Path::new("/d/m.pt"),
            0.2,
            max_wait,
            || {
                let n = looks.get();
                looks.set(n + 1);
                shares[n.min(shares.len() - 1)]
            },
            || t0 + SAMPLE * looks.get() as u32,
            || looks.get() >= stop_after,
        );
        (answer, looks.get())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_quiet_machine_costs_one_look() {
        assert_eq!(run(&[Ok(0.05)], MINUTE, usize::MAX), (None, 1));
    }

    #[test]
    fn a_busy_machine_is_waited_for_until_it_is_quiet() {
        assert_eq!(
            run(&[Ok(0.9), Ok(0.5), Ok(0.2)], MINUTE, usize::MAX),
            (None, 3),
            "at the threshold counts as quiet"
        );
    }

    #[test]
    fn a_machine_busy_for_the_whole_wait_is_measured_anyway_and_marked() {
        let (answer, looks) = run(&[Ok(0.7)], Duration::from_secs(1), usize::MAX);
        assert_eq!(answer, Some(0.7));
        assert_eq!(looks, 4, "one look per SAMPLE until the second is over");
    }

    #[test]
    fn a_stop_or_an_unreadable_proc_stat_ends_the_wait_unmarked() {
        assert_eq!(run(&[Ok(0.9)], MINUTE, 2), (None, 2));
        assert_eq!(
            run(&[Ok(0.9), Err("no /proc")], MINUTE, usize::MAX),
            (None, 2)
        );
    }

    #[test]
    fn no_wait_means_no_look() {
        assert_eq!(run(&[Ok(0.9)], Duration::ZERO, usize::MAX), (None, 0));
    }
}
