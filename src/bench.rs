//! Timing: warm-up, adaptive stopping and the statistics of a sample.
//!
//! Each forward call is timed on its own. The run stops as soon as the median
//! is known precisely enough (the distribution-free 95% confidence interval
//! of the median, from order statistics, is narrower than `target_rel_ci` of
//! the median), or when the per-precision time budget is spent. The budget is
//! a hard limit: an emulated precision that is 30x slower than FP32 ends on
//! the budget with few iterations, and the report says so, instead of
//! stalling the run.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Time budget for one precision on one device, warm-up included.
    pub max_seconds: f64,
    /// Iterations wanted before convergence is even checked; the budget may
    /// still end a run below this.
    pub min_iterations: usize,
    pub max_iterations: usize,
    /// Relative half-width of the median's 95% confidence interval at which
    /// timing stops.
    pub target_rel_ci: f64,
    /// Warm-up calls wanted (TorchScript's profiling executor optimises the
    /// graph during the first calls, oneDNN builds its kernels).
    pub warmup_iterations: usize,
    /// Share of the budget warm-up may take at most.
    pub warmup_budget_share: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            max_seconds: 4.0,
            min_iterations: 10,
            max_iterations: 100_000,
            target_rel_ci: 0.01,
            warmup_iterations: 5,
            warmup_budget_share: 0.25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The median's confidence interval reached the target.
    Converged,
    /// The time budget ran out first.
    TimeBudget,
    MaxIterations,
}

#[derive(Debug, Clone)]
pub struct Measurement {
    pub samples_ms: Vec<f64>,
    pub warmup_iterations: usize,
    pub stop_reason: StopReason,
    pub elapsed_seconds: f64,
}

/// Warms up, then times `call` until the median is stable or the budget is
/// spent. At least one timed call is always made.
pub fn measure<E>(
    config: &BenchConfig,
    mut call: impl FnMut() -> Result<(), E>,
) -> Result<Measurement, E> {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(config.max_seconds.max(0.0));
    let warmup_budget = budget.mul_f64(config.warmup_budget_share.clamp(0.0, 1.0));

    let mut warmup_iterations = 0;
    while warmup_iterations < config.warmup_iterations {
        call()?;
        warmup_iterations += 1;
        if start.elapsed() >= warmup_budget {
            break;
        }
    }

    let mut samples_ms = Vec::new();
    let stop_reason = loop {
        let t0 = Instant::now();
        call()?;
        samples_ms.push(t0.elapsed().as_secs_f64() * 1e3);

        let n = samples_ms.len();
        if n >= config.max_iterations {
            break StopReason::MaxIterations;
        }
        // Checking convergence sorts the sample; doing it on every call would
        // cost O(n^2 log n) for fast models, so check at geometric steps.
        if n >= config.min_iterations
            && (n == config.min_iterations || n % (n / 8).max(1) == 0)
            && median_relative_ci(&samples_ms).is_some_and(|ci| ci <= config.target_rel_ci)
        {
            break StopReason::Converged;
        }
        if start.elapsed() >= budget {
            break StopReason::TimeBudget;
        }
    };

    Ok(Measurement {
        samples_ms,
        warmup_iterations,
        stop_reason,
        elapsed_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Relative half-width of the distribution-free 95% confidence interval of
/// the median: the order statistics at ranks n/2 ± 1.96·√n/2. None when the
/// sample is too small for such an interval (fewer than 6 values) or the
/// median is zero.
pub fn median_relative_ci(samples: &[f64]) -> Option<f64> {
    let n = samples.len();
    if n < 6 {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let half = 1.96 * (n as f64).sqrt() / 2.0;
    let mid = n as f64 / 2.0;
    let lo = (mid - half).floor().max(0.0) as usize;
    let hi = ((mid + half).ceil() as usize).min(n - 1);
    let median = percentile_sorted(&sorted, 50.0);
    if median <= 0.0 {
        return None;
    }
    Some((sorted[hi] - sorted[lo]) / 2.0 / median)
}

/// Latency statistics in milliseconds, as the report shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub median: f64,
    pub mean: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
    pub iterations: usize,
}

impl LatencyStats {
    /// None for an empty sample.
    pub fn from_samples(samples: &[f64]) -> Option<LatencyStats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        // Sample standard deviation (n - 1); zero for a single value.
        let stddev = if sorted.len() > 1 {
            (sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(LatencyStats {
            median: percentile_sorted(&sorted, 50.0),
            mean,
            p90: percentile_sorted(&sorted, 90.0),
            p99: percentile_sorted(&sorted, 99.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            stddev,
            iterations: sorted.len(),
        })
    }
}

/// Percentile with linear interpolation between closest ranks (numpy's
/// default), on an ascending, non-empty slice.
pub fn percentile_sorted(sorted: &[f64], pct: f64) -> f64 {
    let rank = (pct / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_known_sample() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = LatencyStats::from_samples(&samples).unwrap();
        assert_eq!(s.median, 5.5);
        assert_eq!(s.mean, 5.5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 10.0);
        assert!((s.p90 - 9.1).abs() < 1e-12);
        assert!((s.p99 - 9.91).abs() < 1e-12);
        // numpy.std(range(1, 11), ddof=1)
        assert!((s.stddev - 3.0276503540974917).abs() < 1e-12);
        assert_eq!(s.iterations, 10);
    }

    #[test]
    fn statistics_ignore_sample_order_and_handle_one_value() {
        let s = LatencyStats::from_samples(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let one = LatencyStats::from_samples(&[7.0]).unwrap();
        assert_eq!((one.median, one.p99, one.stddev), (7.0, 7.0, 0.0));
        assert!(LatencyStats::from_samples(&[]).is_none());
    }

    #[test]
    fn median_ci_shrinks_with_more_stable_samples() {
        let noisy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let stable = [10.0, 10.1, 9.9, 10.0, 10.05, 9.95, 10.0, 10.0];
        assert!(median_relative_ci(&noisy).unwrap() > 0.3);
        assert!(median_relative_ci(&stable).unwrap() < 0.01);
        assert!(median_relative_ci(&[1.0, 2.0]).is_none());
    }

    #[test]
    fn a_stable_call_converges_before_the_budget() {
        let config = BenchConfig {
            max_seconds: 30.0,
            ..BenchConfig::default()
        };
        let m = measure(&config, || {
            std::thread::sleep(Duration::from_millis(2));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(m.stop_reason, StopReason::Converged);
        assert!(m.samples_ms.len() >= config.min_iterations);
        assert_eq!(m.warmup_iterations, config.warmup_iterations);
    }

    #[test]
    fn a_slow_call_ends_on_the_budget_with_at_least_one_sample() {
        let config = BenchConfig {
            max_seconds: 0.05,
            ..BenchConfig::default()
        };
        let m = measure(&config, || {
            std::thread::sleep(Duration::from_millis(40));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(m.stop_reason, StopReason::TimeBudget);
        assert_eq!(m.samples_ms.len(), 1);
        // The first call already used the warm-up share of the budget.
        assert_eq!(m.warmup_iterations, 1);
    }

    #[test]
    fn an_error_in_the_call_stops_measuring() {
        let mut calls = 0;
        let result = measure(&BenchConfig::default(), || {
            calls += 1;
            if calls == 3 {
                Err("boom")
            } else {
                Ok(())
            }
        });
        assert_eq!(result.unwrap_err(), "boom");
    }
}
