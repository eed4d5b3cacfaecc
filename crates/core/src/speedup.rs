//! Whether a precision is faster than FP32 for this model: decided by the
//! model's own timings, with the confidence interval of its speedup, not by
//! the hardware micro-probe. The probe times one GEMM and one convolution;
//! a model spends its time elsewhere too (memory-bound layers, casts,
//! operators without a fast kernel), and a probe near 1.0x can be flipped by
//! noise. The probe stays in the report as supporting evidence, and where
//! the two disagree the result says both.

use crate::bench::LatencyStats;
use serde::{Deserialize, Serialize};

/// A speedup for people: two decimals, more for one far below 1 (an
/// emulated format 5000x slower reads 0.00021x, not 0.00x).
pub fn format_x(speedup: f64) -> String {
    let decimals = if speedup > 0.0 && speedup < 0.1 {
        (1.0 - speedup.log10().floor()) as usize
    } else {
        2
    };
    format!("{speedup:.decimals$}x")
}

/// What decided a result's `accelerated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratedBy {
    /// This model's speedup and its confidence interval.
    Model,
    /// Hardware detection (flags and probe): the model's timings had no
    /// confidence interval (fewer than 6 timed calls).
    Probe,
}

/// The interval `[low, high]` of FP32's median / this median, from the two
/// medians' 95% intervals (`LatencyStats::median_ci`): the slowest FP32
/// against the fastest this, and the other way round. With both intervals
/// holding, it holds: at least 90% (1 - 0.05 - 0.05), in practice more.
/// None when either side has no interval.
pub fn ci(fp32: &LatencyStats, this: &LatencyStats) -> Option<[f64; 2]> {
    let [f_lo, f_hi] = fp32.median_ci?;
    let [t_lo, t_hi] = this.median_ci?;
    (t_lo > 0.0 && t_hi > 0.0).then(|| [f_lo / t_hi, f_hi / t_lo])
}

/// The acceleration verdict for one result.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub accelerated: Option<bool>,
    pub by: AcceleratedBy,
    /// What the report should say: why, and what the probe said where it
    /// disagrees. None when there is nothing to add (faster, and the probe
    /// agrees or did not run).
    pub note: Option<String>,
}

/// Decides `accelerated` from the model's `speedup` and its interval `ci`;
/// `probe` is hardware detection's verdict (None where no probe ran),
/// `probe_reason` its evidence in words.
///
/// * the interval lies above 1: accelerated;
/// * it lies below 1, or includes 1 (not measurably faster): not;
/// * no interval: the probe's verdict stands, and the note says so.
pub fn decide(
    speedup: f64,
    ci: Option<[f64; 2]>,
    probe: Option<bool>,
    probe_reason: &str,
) -> Decision {
    let Some([lo, hi]) = ci else {
        return Decision {
            accelerated: probe,
            by: AcceleratedBy::Probe,
            note: Some(format!(
                "speedup {} has no confidence interval (fewer than 6 timed calls): \
                 `accelerated` is hardware detection's ({probe_reason})",
                format_x(speedup)
            )),
        };
    };
    let measured = format!(
        "this model's speedup is {} (95% CI {} to {})",
        format_x(speedup),
        format_x(lo),
        format_x(hi)
    );
    let (accelerated, finding) = if lo > 1.0 {
        (true, format!("{measured}: faster than FP32"))
    } else if hi < 1.0 {
        (false, format!("{measured}: slower than FP32"))
    } else {
        (
            false,
            format!("{measured}: not measurably faster than FP32"),
        )
    };
    let note = match probe {
        Some(p) if p != accelerated => Some(format!(
            "the model and the hardware probe disagree: {finding}, so accelerated = \
             {accelerated}; the probe said {} ({probe_reason})",
            if p { "accelerated" } else { "not accelerated" }
        )),
        _ if !accelerated => Some(format!("not accelerated here: {finding}")),
        _ => None,
    };
    Decision {
        accelerated: Some(accelerated),
        by: AcceleratedBy::Model,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ci: Option<[f64; 2]>) -> LatencyStats {
        let mut s = LatencyStats::from_samples(&[1.0]).unwrap();
        s.median_ci = ci;
        s
    }

    #[test]
    fn small_speedups_keep_two_significant_digits() {
        assert_eq!(format_x(3.0412), "3.04x");
        assert_eq!(format_x(0.297), "0.30x");
        assert_eq!(format_x(0.000206), "0.00021x");
        assert_eq!(format_x(0.0), "0.00x");
    }

    #[test]
    fn the_interval_pairs_the_extremes() {
        let fp32 = stats(Some([9.0, 11.0]));
        let this = stats(Some([4.0, 5.0]));
        assert_eq!(ci(&fp32, &this), Some([9.0 / 5.0, 11.0 / 4.0]));
        assert_eq!(ci(&fp32, &stats(None)), None);
    }

    #[test]
    fn the_model_decides_whatever_the_probe_said() {
        let faster = decide(1.8, Some([1.6, 2.0]), Some(false), "probe 0.98x");
        assert_eq!(faster.accelerated, Some(true));
        assert_eq!(faster.by, AcceleratedBy::Model);
        let note = faster.note.unwrap();
        assert!(
            note.contains("disagree") && note.contains("1.80x"),
            "{note}"
        );
        assert!(
            note.contains("probe said not accelerated (probe 0.98x)"),
            "{note}"
        );

        let slower = decide(0.5, Some([0.45, 0.55]), Some(true), "probe 1.02x");
        assert_eq!(slower.accelerated, Some(false));
        let note = slower.note.unwrap();
        assert!(note.contains("slower than FP32") && note.contains("probe said accelerated"));

        // Agreement needs no word when faster; a slower result says why.
        assert_eq!(decide(2.0, Some([1.9, 2.1]), Some(true), "").note, None);
        assert_eq!(decide(2.0, Some([1.9, 2.1]), None, "").note, None);
        let same = decide(1.01, Some([0.97, 1.05]), None, "");
        assert_eq!(same.accelerated, Some(false));
        assert!(same.note.unwrap().contains("not measurably faster"));
    }

    #[test]
    fn without_an_interval_the_probe_stands_and_says_so() {
        let d = decide(3.0, None, Some(false), "no AVX512-FP16");
        assert_eq!((d.accelerated, d.by), (Some(false), AcceleratedBy::Probe));
        assert!(d
            .note
            .unwrap()
            .contains("hardware detection's (no AVX512-FP16)"));
        assert_eq!(decide(3.0, None, None, "").accelerated, None);
    }
}
