//! The wait for a quiet machine before a job: a timing taken while the
//! device does its real work is not the model's speed. Runs in the job's
//! thread, never the daemon's main one.

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
    let start = Instant::now();
    let mut logged = false;
    loop {
        let share = match cpu::busy_share(Path::new("/"), cpus.as_deref(), SAMPLE) {
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
                    start.elapsed().as_secs_f64()
                );
            }
            return None;
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        if start.elapsed() >= max_wait {
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
