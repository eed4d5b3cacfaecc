//! The conditions a precision was timed under: what else the machine did
//! (`cpu`) and how hot and fast its CPU was (`thermal`), read from /proc
//! and sysfs under a root folder ("/" here, a recorded tree in the tests),
//! and the judgement whether the timing is the model's speed at all.

pub mod cpu;
pub mod thermal;

use crate::bench::LatencyStats;
use cpu::CpuSnapshot;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thermal::{ThermalSnapshot, Throttling};

/// How far the conditions may go before a result is marked. The config
/// (`busy_threshold`, `contended_ci_percent`, `contended_p90_ratio`,
/// `clock_drop_percent`) and `precisiond run`'s flags of the same names set them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Share of the worker's CPUs others may use.
    pub busy_threshold: f64,
    /// The median's relative 95% confidence half-width beyond which the
    /// timing is unsteady.
    pub max_rel_ci: f64,
    /// p90 over median beyond which the timing is unsteady.
    pub max_p90_ratio: f64,
    /// Share the CPU clock may fall by.
    pub max_clock_drop: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            busy_threshold: 0.25,
            max_rel_ci: 0.05,
            max_p90_ratio: 1.5,
            max_clock_drop: 0.10,
        }
    }
}

/// Whether a timing is the model's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// Quiet machine, steady clock, steady timings.
    Clean,
    /// Others used the worker's CPUs, or the timings spread as they do
    /// under contention.
    Contended,
    /// The clock fell or a thermal zone reached its trip point.
    Throttled,
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quality::Clean => "clean",
            Quality::Contended => "contended",
            Quality::Throttled => "throttled",
        })
    }
}

impl Quality {
    /// The word a note starts with.
    pub fn word(self) -> &'static str {
        match self {
            Quality::Clean => "clean",
            Quality::Contended => "CONTENDED",
            Quality::Throttled => "THROTTLED",
        }
    }
}

/// `[results.conditions]`: the figures over one precision's timed calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    /// The window watched: warm-up and timed calls, at least 0.25 s (the
    /// kernel counts CPU time in 10 ms ticks).
    pub wall_seconds: f64,
    /// CPUs the worker may run on (sched_getaffinity).
    pub cpus: usize,
    /// The worker's own CPU time, libtorch's threads included (getrusage).
    pub worker_cpu_seconds: f64,
    /// CPU time of everything else on those CPUs (/proc/stat minus the worker's).
    pub others_cpu_seconds: f64,
    /// `others_cpu_seconds` over what the CPUs could give in `wall_seconds`.
    pub others_share: f64,
    /// Time a hypervisor gave to other guests.
    pub steal_seconds: f64,
    /// The worker's involuntary context switches.
    pub involuntary_switches: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average_start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average_end: Option<f64>,
    pub throttling: Throttling,
    /// Why the result is not clean, in words; empty when it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
}

/// Snapshots taken before a precision's timed calls; [`Watch::finish`]
/// after them gives the [`Conditions`].
pub struct Watch {
    root: PathBuf,
    cpus: Option<Vec<usize>>,
    cpu: Result<CpuSnapshot, cpu::CpuStatError>,
    thermal: ThermalSnapshot,
    started: std::time::Instant,
}

/// The shortest window the CPU counters are compared over.
const MIN_WATCH: std::time::Duration = std::time::Duration::from_millis(250);

impl Watch {
    /// Starts watching the CPUs this process may use, reading under `root`.
    pub fn start(root: &Path) -> Watch {
        let cpus = cpu::allowed_cpus();
        Watch {
            root: root.to_path_buf(),
            cpu: CpuSnapshot::take(root, cpus.as_deref()),
            thermal: ThermalSnapshot::take(root, cpus.as_deref()),
            cpus,
            started: std::time::Instant::now(),
        }
    }

    /// The conditions since [`Watch::start`]; None when /proc/stat could
    /// not be read (the error is logged).
    pub fn finish(self) -> Option<Conditions> {
        // /proc/stat counts in 10 ms ticks: a model timed in 2 ms would
        // show nothing at all, so the machine is watched a little longer.
        let watched = self.started.elapsed();
        if watched < MIN_WATCH {
            std::thread::sleep(MIN_WATCH - watched);
        }
        let after = CpuSnapshot::take(&self.root, self.cpus.as_deref());
        let thermal_after = ThermalSnapshot::take(&self.root, self.cpus.as_deref());
        let used = match (&self.cpu, &after) {
            (Ok(before), Ok(after)) => before.until(after),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!("the conditions of this timing are unknown: {e}");
                return None;
            }
        };
        Some(Conditions {
            wall_seconds: round(used.wall_seconds, 3),
            cpus: used.cpus,
            worker_cpu_seconds: round(used.own_cpu_seconds, 3),
            others_cpu_seconds: round(used.others_cpu_seconds, 3),
            others_share: round(used.others_share, 3),
            steal_seconds: round(used.steal_seconds, 3),
            involuntary_switches: used.involuntary_switches,
            load_average_start: used.load_average_start,
            load_average_end: used.load_average_end,
            throttling: Throttling::between(&self.thermal, &thermal_after),
            why: Vec::new(),
        })
    }
}

impl Conditions {
    /// Judges a timing: fills `why` and says its quality. Throttling wins
    /// over contention (a hot device stays slow however quiet it gets).
    /// The spread is judged only on a sample of at least `min_iterations`,
    /// where a wide interval is not just a short sample.
    pub fn judge(
        &mut self,
        limits: &Limits,
        stats: &LatencyStats,
        median_rel_ci: Option<f64>,
        min_iterations: usize,
    ) -> Quality {
        let throttled = self.throttling.problems(limits.max_clock_drop);
        let mut contended = Vec::new();
        if self.others_share > limits.busy_threshold {
            contended.push(format!(
                "other processes used {:.0}% of the {} CPU(s) the worker had ({:.2} CPU-seconds \
                 in {:.2} s; more than the {:.0}% busy_threshold), load average {} -> {}, \
                 {} involuntary context switches",
                self.others_share * 100.0,
                self.cpus,
                self.others_cpu_seconds,
                self.wall_seconds,
                limits.busy_threshold * 100.0,
                fmt_load(self.load_average_start),
                fmt_load(self.load_average_end),
                self.involuntary_switches
            ));
        }
        if self.steal_seconds > limits.busy_threshold * self.wall_seconds * self.cpus as f64 {
            contended.push(format!(
                "the hypervisor stole {:.2} CPU-seconds in {:.2} s",
                self.steal_seconds, self.wall_seconds
            ));
        }
        if stats.iterations >= min_iterations {
            if let Some(ci) = median_rel_ci.filter(|ci| *ci > limits.max_rel_ci) {
                contended.push(format!(
                    "the median's 95% confidence interval stayed at ±{:.1}% (more than ±{:.1}%)",
                    ci * 100.0,
                    limits.max_rel_ci * 100.0
                ));
            }
            if stats.median > 0.0 && stats.p90 / stats.median > limits.max_p90_ratio {
                contended.push(format!(
                    "p90 {:.3} ms is {:.1}x the median {:.3} ms (more than {:.1}x)",
                    stats.p90,
                    stats.p90 / stats.median,
                    stats.median,
                    limits.max_p90_ratio
                ));
            }
        }
        let quality = if !throttled.is_empty() {
            Quality::Throttled
        } else if !contended.is_empty() {
            Quality::Contended
        } else {
            Quality::Clean
        };
        self.why = throttled.into_iter().chain(contended).collect();
        quality
    }
}

fn fmt_load(load: Option<f64>) -> String {
    load.map_or_else(|| "unknown".into(), |l| format!("{l:.2}"))
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests;
