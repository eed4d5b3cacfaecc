//! Timing: warm-up, adaptive stopping and the statistics of a sample.
//!
//! Each forward call is timed on its own. The run stops as soon as the median
//! is known precisely enough (the distribution-free 95% confidence interval
//! of the median, from exact binomial order statistics, is narrower than
//! `target_rel_ci` of the median), or when the per-precision time budget
//! would be overrun. Before each call the previous call's duration is
//! compared with what is left of the budget, and a call that would not fit
//! is not made: an emulated precision that is 30x slower than FP32 ends with
//! few iterations and a stop reason that says why, instead of stalling the
//! run. The budget is not a hard limit: one warm-up call and one timed call
//! are always made, and a call slower than the one before it can overrun.

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
    /// The time budget ran out first, after at least `min_iterations` calls.
    TimeBudget,
    MaxIterations,
    /// One call takes longer than what was left of the budget, before
    /// `min_iterations` calls were timed: the next call was not made. The
    /// statistics rest on few calls.
    CallExceedsBudget,
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
    call: impl FnMut() -> Result<(), E>,
) -> Result<Measurement, E> {
    measure_observed(config, call, &mut NoObserver)
}

/// Told when the timed calls start and end (after the warm-up): what must
/// cover exactly the timed window (an energy counter) hooks in here.
pub trait TimedWindow {
    fn started(&mut self);
    fn ended(&mut self);
}

struct NoObserver;

impl TimedWindow for NoObserver {
    fn started(&mut self) {}
    fn ended(&mut self) {}
}

/// [`measure`], telling `window` when the timed calls start and end.
pub fn measure_observed<E>(
    config: &BenchConfig,
    mut call: impl FnMut() -> Result<(), E>,
    window: &mut dyn TimedWindow,
) -> Result<Measurement, E> {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(config.max_seconds.max(0.0));
    let warmup_budget = budget.mul_f64(config.warmup_budget_share.clamp(0.0, 1.0));

    let mut warmup_iterations = 0;
    while warmup_iterations < config.warmup_iterations {
        let t0 = Instant::now();
        call()?;
        warmup_iterations += 1;
        // Stop warming up before a call that would end past the warm-up share.
        if start.elapsed() + t0.elapsed() > warmup_budget {
            break;
        }
    }

    let mut samples_ms = Vec::new();
    window.started();
    let stop_reason = loop {
        let t0 = Instant::now();
        call()?;
        let took = t0.elapsed();
        samples_ms.push(took.as_secs_f64() * 1e3);

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
        // The next call is predicted to take as long as this one.
        if start.elapsed() + took > budget {
            break if n < config.min_iterations {
                StopReason::CallExceedsBudget
            } else {
                StopReason::TimeBudget
            };
        }
    };
    window.ended();

    Ok(Measurement {
        samples_ms,
        warmup_iterations,
        stop_reason,
        elapsed_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Confidence level of the median's interval.
pub const MEDIAN_CI_LEVEL: f64 = 0.95;

/// 1-based ranks `(k, n + 1 - k)` of the order statistics that bound the
/// median of `n` values with at least [`MEDIAN_CI_LEVEL`] confidence, exactly:
/// the number of values below the true median is Binomial(n, 1/2), so
/// P(X(k) <= median <= X(n+1-k)) = 1 - 2 P(Bin(n, 1/2) <= k - 1). `k` is the
/// largest rank with that coverage. This assumes independent, identically
/// distributed calls; nothing else. None below 6 values, where even the
/// sample's extremes cover the median less than 95% of the time.
pub fn median_ci_ranks(n: usize) -> Option<(usize, usize)> {
    let tail = (1.0 - MEDIAN_CI_LEVEL) / 2.0;
    // P(Bin(n, 1/2) = i), from the log of its first term so that large n
    // does not underflow the terms that matter.
    let mut log_pmf = n as f64 * 0.5f64.ln();
    let mut cdf = 0.0;
    let mut k = 0;
    while k < n / 2 {
        let next = cdf + log_pmf.exp();
        if next > tail {
            break;
        }
        cdf = next;
        log_pmf += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
        k += 1;
    }
    (k >= 1).then_some((k, n + 1 - k))
}

/// The median's 95% confidence interval `(low, high)` in the sample's unit,
/// from [`median_ci_ranks`]. None for fewer than 6 values.
pub fn median_ci(samples: &[f64]) -> Option<(f64, f64)> {
    let (lo, hi) = median_ci_ranks(samples.len())?;
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((sorted[lo - 1], sorted[hi - 1]))
}

/// Relative half-width of the median's 95% confidence interval
/// ([`median_ci`]). None when the sample is too small for such an interval
/// (fewer than 6 values) or the median is zero.
pub fn median_relative_ci(samples: &[f64]) -> Option<f64> {
    let (lo, hi) = median_ci(samples)?;
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = percentile_sorted(&sorted, 50.0);
    if median <= 0.0 {
        return None;
    }
    Some((hi - lo) / 2.0 / median)
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
    /// The median's 95% confidence interval `[low, high]` (exact binomial
    /// order statistics); absent below 6 iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_ci: Option<[f64; 2]>,
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
            median_ci: median_ci(&sorted).map(|(lo, hi)| [lo, hi]),
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
    fn median_ci_ranks_match_binomial_tables() {
        // Known exact ranks: n = 6 -> (1, 6), coverage 1 - 2/64 = 96.9%;
        // n = 10 -> (2, 9), 97.9%; n = 20 -> (6, 15), 95.9%;
        // n = 100 -> (40, 61), 96.5% (e.g. Conover, Practical
        // Nonparametric Statistics, table A3; scipy.stats.binom.ppf).
        assert_eq!(median_ci_ranks(5), None);
        assert_eq!(median_ci_ranks(6), Some((1, 6)));
        assert_eq!(median_ci_ranks(10), Some((2, 9)));
        assert_eq!(median_ci_ranks(20), Some((6, 15)));
        assert_eq!(median_ci_ranks(100), Some((40, 61)));
        // Exact sums of C(10000, i) / 2^10000 (Python integers) give 4902.
        assert_eq!(median_ci_ranks(10_000), Some((4902, 5099)));
        // Large samples neither underflow nor take the extremes.
        let (lo, hi) = median_ci_ranks(100_000).unwrap();
        assert!(lo > 49_000 && hi < 51_000 && lo + hi == 100_001);
    }

    #[test]
    fn median_ci_takes_those_order_statistics() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(median_ci(&samples), Some((6.0, 15.0)));
        let s = LatencyStats::from_samples(&samples).unwrap();
        assert_eq!(s.median_ci, Some([6.0, 15.0]));
        assert_eq!(
            LatencyStats::from_samples(&[1.0; 5]).unwrap().median_ci,
            None
        );
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
    fn a_call_longer_than_the_remaining_budget_is_not_made() {
        let config = BenchConfig {
            max_seconds: 0.05,
            ..BenchConfig::default()
        };
        let m = measure(&config, || {
            std::thread::sleep(Duration::from_millis(40));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(m.stop_reason, StopReason::CallExceedsBudget);
        assert_eq!(m.samples_ms.len(), 1);
        // The first call already used the warm-up share of the budget.
        assert_eq!(m.warmup_iterations, 1);
    }

    #[test]
    fn a_fast_call_ends_on_the_budget_within_one_call() {
        let config = BenchConfig {
            max_seconds: 0.5,
            target_rel_ci: 0.0,
            ..BenchConfig::default()
        };
        let m = measure(&config, || {
            std::thread::sleep(Duration::from_millis(5));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(m.stop_reason, StopReason::TimeBudget);
        assert!(m.samples_ms.len() >= config.min_iterations);
        // A call is made only when the one before it would still fit, so
        // the budget is overrun by at most one call's excess over that.
        let longest_s = m.samples_ms.iter().cloned().fold(0.0, f64::max) / 1e3;
        assert!(
            m.elapsed_seconds <= 0.5 + longest_s,
            "{} s with calls up to {longest_s} s",
            m.elapsed_seconds
        );
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
