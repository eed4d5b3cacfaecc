//! What else the CPUs did while the worker was timed: /proc/stat's busy
//! time on the CPUs the worker may use, the worker's own CPU time and
//! involuntary context switches (getrusage), steal time on a VM, and the
//! load average.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// One reading of the CPU counters, taken before and after the timed calls.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    /// Busy ticks (user, nice, system, irq, softirq) summed over `cpus`.
    busy_ticks: u64,
    /// Steal ticks summed over `cpus`: time the hypervisor gave to others.
    steal_ticks: u64,
    /// This process's user and system CPU time, all threads, in seconds.
    self_cpu_seconds: f64,
    involuntary_switches: u64,
    load_average: Option<f64>,
    cpus: usize,
}

/// The CPUs seen between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUse {
    pub wall_seconds: f64,
    pub cpus: usize,
    pub own_cpu_seconds: f64,
    /// CPU time spent by everything else on the same CPUs.
    pub others_cpu_seconds: f64,
    /// `others_cpu_seconds` over what `cpus` CPUs could give in the wall time.
    pub others_share: f64,
    pub steal_seconds: f64,
    pub involuntary_switches: u64,
    pub load_average_start: Option<f64>,
    pub load_average_end: Option<f64>,
}

impl CpuSnapshot {
    /// Reads /proc/stat and /proc/loadavg under `root` (default "/") for the
    /// CPUs in `cpus` (None: every CPU), and this process's getrusage.
    pub fn take(root: &Path, cpus: Option<&[usize]>) -> Result<CpuSnapshot, CpuStatError> {
        let at = Instant::now();
        let path = root.join("proc/stat");
        let stat =
            std::fs::read_to_string(&path).map_err(|error| CpuStatError::Read { path, error })?;
        let (busy_ticks, steal_ticks, counted) = busy_and_steal(&stat, cpus)?;
        let load_average = std::fs::read_to_string(root.join("proc/loadavg"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        let (self_cpu_seconds, involuntary_switches) = own_usage();
        Ok(CpuSnapshot {
            at,
            busy_ticks,
            steal_ticks,
            self_cpu_seconds,
            involuntary_switches,
            load_average,
            cpus: counted,
        })
    }

    /// What happened from `self` to `later`.
    pub fn until(&self, later: &CpuSnapshot) -> CpuUse {
        let tick = ticks_per_second();
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let busy = later.busy_ticks.saturating_sub(self.busy_ticks) as f64 / tick;
        let own = (later.self_cpu_seconds - self.self_cpu_seconds).max(0.0);
        // /proc/stat counts in ticks, getrusage in microseconds: a small
        // negative difference is rounding, not a negative load.
        let others = (busy - own).max(0.0);
        let capacity = wall * self.cpus.max(1) as f64;
        CpuUse {
            wall_seconds: wall,
            cpus: self.cpus,
            own_cpu_seconds: own,
            others_cpu_seconds: others,
            others_share: if capacity > 0.0 {
                (others / capacity).min(1.0)
            } else {
                0.0
            },
            steal_seconds: later.steal_ticks.saturating_sub(self.steal_ticks) as f64 / tick,
            involuntary_switches: later
                .involuntary_switches
                .saturating_sub(self.involuntary_switches),
            load_average_start: self.load_average,
            load_average_end: later.load_average,
        }
    }
}

/// Busy and steal ticks summed over the `cpuN` lines of /proc/stat whose N
/// is in `cpus` (all of them when None), and how many lines were counted.
/// Fields: user nice system idle iowait irq softirq steal guest guest_nice;
/// guest time is already inside user, so it is not added again.
pub fn busy_and_steal(
    stat: &str,
    cpus: Option<&[usize]>,
) -> Result<(u64, u64, usize), CpuStatError> {
    let (mut busy, mut steal, mut counted) = (0u64, 0u64, 0usize);
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(index) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if cpus.is_some_and(|set| !set.contains(&index)) {
            continue;
        }
        let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        busy += at(0) + at(1) + at(2) + at(5) + at(6);
        steal += at(7);
        counted += 1;
    }
    if counted == 0 {
        return Err(CpuStatError::NoCpuLine);
    }
    Ok((busy, steal, counted))
}

/// Why the CPUs' use cannot be known.
#[derive(Debug, thiserror::Error)]
pub enum CpuStatError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no cpuN line of /proc/stat matches the CPUs this process may use")]
    NoCpuLine,
}

/// The CPUs this process may run on (sched_getaffinity), None if unknown.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&i| libc::CPU_ISSET(i, &set))
                .collect(),
        )
    }
}

/// This process's CPU seconds (user + system, every thread, libtorch's
/// included) and its involuntary context switches.
fn own_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_nivcsw.max(0) as u64,
    )
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// The share of `cpus` (None: all) that was busy during `window`, with
/// nothing of ours running: what the daemon samples before a job.
pub fn busy_share(
    root: &Path,
    cpus: Option<&[usize]>,
    window: std::time::Duration,
) -> Result<f64, CpuStatError> {
    let before = CpuSnapshot::take(root, cpus)?;
    std::thread::sleep(window);
    let after = CpuSnapshot::take(root, cpus)?;
    Ok(before.until(&after).others_share)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/stat as the kernel writes it (Documentation/filesystems/proc.rst),
    /// recorded on a 2-CPU VM.
    const STAT: &str = "cpu  1000 10 500 9000 20 0 30 40 0 0
cpu0 600 5 300 4000 10 0 20 30 0 0
cpu1 400 5 200 5000 10 0 10 10 0 0
intr 123
ctxt 456
";

    #[test]
    fn busy_ticks_count_user_nice_system_irq_softirq_of_the_allowed_cpus() {
        assert_eq!(busy_and_steal(STAT, None).unwrap(), (1540, 40, 2));
        assert_eq!(busy_and_steal(STAT, Some(&[1])).unwrap(), (615, 10, 1));
        assert!(matches!(
            busy_and_steal(STAT, Some(&[7])),
            Err(CpuStatError::NoCpuLine)
        ));
    }

    #[test]
    fn a_busy_thread_of_our_own_is_not_counted_as_others() {
        let root = Path::new("/");
        let before = CpuSnapshot::take(root, None).unwrap();
        // Spin until this process has used 0.3 CPU-seconds, however long a
        // shared machine takes to give them.
        let used = loop {
            let mut x = 0u64;
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let used = before.until(&CpuSnapshot::take(root, None).unwrap());
            if used.own_cpu_seconds >= 0.3 || used.wall_seconds > 20.0 {
                break used;
            }
        };
        assert!(used.own_cpu_seconds >= 0.3, "{used:?}");
        // Ours and others' together fit in what the CPUs could give (one
        // 10 ms tick per CPU of rounding at each end).
        let capacity = used.wall_seconds * used.cpus as f64 + 0.02 * used.cpus as f64;
        assert!(
            used.own_cpu_seconds + used.others_cpu_seconds <= capacity,
            "{used:?}"
        );
        assert!((0.0..=1.0).contains(&used.others_share), "{used:?}");
    }
}
