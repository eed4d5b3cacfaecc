//! How far a precision's outputs drift from FP32's on the same inputs.
//!
//! Metrics are computed in f64. None of them is ever NaN or infinite in a
//! report: where a metric is undefined (an all-zero reference, identical
//! outputs, non-finite values) it is left out and `why_absent` says why.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputAccuracy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs_error: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqnr_db: Option<f64>,
    /// Metric name -> why it is not given, for people.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub why_absent: BTreeMap<String, String>,
    /// Metric name -> the kind of reason `why_absent` gives, for code (the
    /// verdict tells outputs that agree from outputs that collapsed by it).
    /// Absent in reports written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub absent_kind: BTreeMap<String, Absence>,
}

/// Why a metric could not be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Absence {
    /// Both outputs are all zeros: they agree, but cosine is undefined.
    BothZero,
    /// The outputs are identical: the noise is zero, SQNR is unbounded.
    Identical,
    /// FP32's output is all zeros.
    ReferenceZero,
    /// This precision's output is all zeros.
    OutputZero,
    /// FP32's output holds NaN or infinite values.
    ReferenceNonFinite,
    /// This precision's output holds NaN or infinite values (overflow).
    OutputNonFinite,
    /// The outputs differ in number or in size.
    Mismatch,
    /// The output is empty.
    Empty,
    /// An output could not be read as numbers.
    Unreadable,
    /// forward() failed on a sample the outputs were to be compared on.
    ForwardFailed,
    /// The outputs were not compared at all (TensorRT times the engine on
    /// its own inputs).
    NotCompared,
}

impl Absence {
    /// The metric is undefined because the outputs agree exactly, not
    /// because this precision lost them: no threshold is broken.
    pub fn outputs_agree(self) -> bool {
        matches!(self, Absence::BothZero | Absence::Identical)
    }
}

/// The whole model's accuracy: the worst value of each metric over its
/// outputs, and each output's own figures when there are several.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    #[serde(flatten)]
    pub worst: OutputAccuracy,
    /// Fraction of rows whose arg-max matches FP32's, for classifier-shaped
    /// `[N, C]` first outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputAccuracy>,
}

/// The metrics every comparison gives or says why it does not.
pub const METRICS: [&str; 3] = ["cosine", "max_abs_error", "sqnr_db"];

impl OutputAccuracy {
    /// No metric, each for the same reason.
    pub fn absent(kind: Absence, why: &str) -> OutputAccuracy {
        let mut acc = OutputAccuracy::default();
        for metric in METRICS {
            acc.mark_absent(metric, kind, why);
        }
        acc
    }

    /// Records that `metric` is not given: its kind and, for people, why.
    pub fn mark_absent(&mut self, metric: &str, kind: Absence, why: impl Into<String>) {
        self.why_absent.insert(metric.to_owned(), why.into());
        self.absent_kind.insert(metric.to_owned(), kind);
    }
}

impl Accuracy {
    /// No metric, each for the same reason (the outputs could not be
    /// compared at all).
    pub fn absent(kind: Absence, why: &str) -> Accuracy {
        Accuracy {
            worst: OutputAccuracy::absent(kind, why),
            ..Accuracy::default()
        }
    }
}

/// The bounds a precision's outputs must keep against FP32's for the result
/// to count as the same model: the config's `[accuracy]` table, a settings
/// file's `[accuracy]` overriding it per model. A result outside them gets
/// `accuracy_ok = false` with the reason, so a precision that lost the
/// model's outputs is never shown as a plain speedup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccuracyThresholds {
    /// Worst output's cosine similarity with FP32's, at least.
    pub min_cosine: f64,
    /// Worst output's signal-to-quantization-noise ratio, dB, at least.
    pub min_sqnr_db: f64,
    /// Share of `[N, C]` rows whose arg-max matches FP32's, at least.
    pub min_top1_agreement: f64,
}

impl Default for AccuracyThresholds {
    fn default() -> Self {
        // SQNR 20 dB is noise at a tenth of the signal's amplitude, which
        // alone gives a cosine of about 0.995; INT8 of a healthy CNN keeps
        // 25-40 dB. Top-1 is off: on synthetic inputs with a batch of 1 a
        // near tie flips the one arg-max of outputs that agree to 1e-7
        // (measured: cnn_residual in fp16, cosine 0.9999999, top-1 0.0).
        AccuracyThresholds {
            min_cosine: 0.99,
            min_sqnr_db: 20.0,
            min_top1_agreement: 0.0,
        }
    }
}

/// A settings file's `[accuracy]`: any threshold it names replaces the
/// config's for that model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyOverrides {
    pub min_cosine: Option<f64>,
    pub min_sqnr_db: Option<f64>,
    pub min_top1_agreement: Option<f64>,
}

impl AccuracyThresholds {
    /// These thresholds, with those `overrides` names replaced.
    pub fn with(self, overrides: &AccuracyOverrides) -> AccuracyThresholds {
        AccuracyThresholds {
            min_cosine: overrides.min_cosine.unwrap_or(self.min_cosine),
            min_sqnr_db: overrides.min_sqnr_db.unwrap_or(self.min_sqnr_db),
            min_top1_agreement: overrides
                .min_top1_agreement
                .unwrap_or(self.min_top1_agreement),
        }
    }

    /// The first threshold out of its range, named by its knob (the
    /// bounds are the job's, `crate::job::bounds::Knob::check`).
    pub fn validate(&self) -> Result<(), crate::job::bounds::BadKnob> {
        use crate::job::bounds::Knob;
        Knob::MinCosine.check(self.min_cosine)?;
        Knob::MinSqnrDb.check(self.min_sqnr_db)?;
        Knob::MinTop1Agreement.check(self.min_top1_agreement)
    }

    /// Whether `accuracy` keeps to these thresholds: `Err` says every bound
    /// it breaks. A metric that could not be computed because this
    /// precision's output collapsed (all zeros, NaN or infinite, another
    /// size) breaks its bound too; one that is undefined because the outputs
    /// agree exactly (both all zeros, identical) does not.
    pub fn judge(&self, accuracy: &Accuracy) -> Result<(), String> {
        let worst = &accuracy.worst;
        let mut broken = Vec::new();
        match worst.cosine {
            Some(c) if c < self.min_cosine => broken.push(format!(
                "cosine {c:.4} is below min_cosine {}",
                self.min_cosine
            )),
            Some(_) => {}
            None => {
                let agree = worst
                    .absent_kind
                    .get("cosine")
                    .is_some_and(|k| k.outputs_agree());
                if let Some(why) = worst.why_absent.get("cosine").filter(|_| !agree) {
                    broken.push(format!("cosine cannot be computed: {why}"));
                }
            }
        }
        match worst.sqnr_db {
            Some(db) if db < self.min_sqnr_db => broken.push(format!(
                "SQNR {db:.1} dB is below min_sqnr_db {}",
                self.min_sqnr_db
            )),
            _ => {}
        }
        match accuracy.top1_agreement {
            Some(t) if t < self.min_top1_agreement => broken.push(format!(
                "top-1 agreement {t:.3} is below min_top1_agreement {}",
                self.min_top1_agreement
            )),
            _ => {}
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "this precision does not keep the model's outputs: {}",
                broken.join("; ")
            ))
        }
    }
}

/// Compares one output with its FP32 reference, both flattened.
pub fn compare_values(reference: &[f64], candidate: &[f64]) -> OutputAccuracy {
    if reference.len() != candidate.len() {
        return OutputAccuracy::absent(
            Absence::Mismatch,
            &format!(
                "output has {} values, FP32's has {}",
                candidate.len(),
                reference.len()
            ),
        );
    }
    let bad_ref = reference.iter().filter(|v| !v.is_finite()).count();
    let bad_out = candidate.iter().filter(|v| !v.is_finite()).count();
    if bad_ref + bad_out > 0 {
        let (kind, why) = if bad_ref > 0 {
            (
                Absence::ReferenceNonFinite,
                format!("the FP32 reference output has {bad_ref} non-finite values"),
            )
        } else {
            (
                Absence::OutputNonFinite,
                format!(
                    "{bad_out} of {} output values are NaN or infinite (overflow in this precision)",
                    candidate.len()
                ),
            )
        };
        return OutputAccuracy::absent(kind, &why);
    }
    if reference.is_empty() {
        return OutputAccuracy::absent(Absence::Empty, "the output is empty");
    }
    let mut acc = OutputAccuracy::default();
    let (mut dot, mut ref_sq, mut out_sq, mut err_sq, mut max_abs) = (0.0, 0.0, 0.0, 0.0, 0.0f64);
    for (&r, &c) in reference.iter().zip(candidate) {
        dot += r * c;
        ref_sq += r * r;
        out_sq += c * c;
        err_sq += (r - c) * (r - c);
        max_abs = max_abs.max((r - c).abs());
    }
    let ref_norm = ref_sq.sqrt();
    let out_norm = out_sq.sqrt();
    acc.max_abs_error = Some(max_abs);

    // Cosine is undefined for a zero vector; two all-zero outputs agree, but
    // calling that "cosine 1" would hide that nothing was compared.
    if ref_norm == 0.0 && out_norm == 0.0 {
        acc.mark_absent(
            "cosine",
            Absence::BothZero,
            "both outputs are all zeros: they agree, but cosine is undefined",
        );
    } else if ref_norm == 0.0 {
        acc.mark_absent(
            "cosine",
            Absence::ReferenceZero,
            "the FP32 output is all zeros: cosine is undefined",
        );
    } else if out_norm == 0.0 {
        acc.mark_absent(
            "cosine",
            Absence::OutputZero,
            "this precision's output is all zeros: cosine is undefined",
        );
    } else {
        acc.cosine = Some((dot / (ref_norm * out_norm)).clamp(-1.0, 1.0));
    }

    if ref_sq == 0.0 {
        // Both all zeros: the outputs agree; FP32's alone: no signal.
        let kind = if err_sq == 0.0 {
            Absence::BothZero
        } else {
            Absence::ReferenceZero
        };
        acc.mark_absent(
            "sqnr_db",
            kind,
            "the FP32 output is all zeros: no signal to compare noise with",
        );
    } else if err_sq == 0.0 {
        acc.mark_absent(
            "sqnr_db",
            Absence::Identical,
            "outputs are identical to FP32: the noise is zero, SQNR is unbounded",
        );
    } else {
        acc.sqnr_db = Some(10.0 * (ref_sq / err_sq).log10());
    }
    acc
}

/// Folds per-output figures into the worst case for the whole model.
pub fn combine(outputs: Vec<OutputAccuracy>, top1_agreement: Option<f64>) -> Accuracy {
    let mut worst = OutputAccuracy::default();
    let several = outputs.len() > 1;
    for (index, out) in outputs.iter().enumerate() {
        worst.cosine = min_opt(worst.cosine, out.cosine);
        worst.sqnr_db = min_opt(worst.sqnr_db, out.sqnr_db);
        worst.max_abs_error = match (worst.max_abs_error, out.max_abs_error) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (metric, why) in &out.why_absent {
            if worst.why_absent.contains_key(metric) {
                continue;
            }
            let why = if several {
                format!("output {index}: {why}")
            } else {
                why.clone()
            };
            worst.why_absent.insert(metric.clone(), why);
            if let Some(kind) = out.absent_kind.get(metric) {
                worst.absent_kind.insert(metric.clone(), *kind);
            }
        }
    }
    // A metric known for some outputs is reported; its absence for others
    // stays visible in the per-output list.
    let still_absent = |metric: &String| match metric.as_str() {
        "cosine" => worst.cosine.is_none(),
        "sqnr_db" => worst.sqnr_db.is_none(),
        "max_abs_error" => worst.max_abs_error.is_none(),
        _ => true,
    };
    let keep: Vec<String> = worst
        .why_absent
        .keys()
        .chain(worst.absent_kind.keys())
        .filter(|m| still_absent(m))
        .cloned()
        .collect();
    worst.why_absent.retain(|m, _| keep.contains(m));
    worst.absent_kind.retain(|m, _| keep.contains(m));
    Accuracy {
        worst,
        top1_agreement,
        outputs: if several { outputs } else { Vec::new() },
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Fraction of rows whose arg-max agrees, for `[rows, classes]` logits given
/// row-major.
pub fn top1_agreement(reference: &[f64], candidate: &[f64], classes: usize) -> Option<f64> {
    if classes < 2 || reference.len() != candidate.len() || !reference.len().is_multiple_of(classes)
    {
        return None;
    }
    let argmax = |row: &[f64]| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    };
    let rows = reference.len() / classes;
    if rows == 0 {
        return None;
    }
    let same = reference
        .chunks(classes)
        .zip(candidate.chunks(classes))
        .filter(|(r, c)| argmax(r) == argmax(c))
        .count();
    Some(same as f64 / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_noise_gives_high_cosine_and_sqnr() {
        let reference: Vec<f64> = (0..100).map(|i| (i as f64 * 0.1).sin()).collect();
        let candidate: Vec<f64> = reference.iter().map(|v| v + 1e-3).collect();
        let acc = compare_values(&reference, &candidate);
        assert!(acc.cosine.unwrap() > 0.9999);
        assert!((acc.max_abs_error.unwrap() - 1e-3).abs() < 1e-12);
        // signal power ~0.5 per value, noise 1e-6: about 57 dB
        let sqnr = acc.sqnr_db.unwrap();
        assert!((50.0..65.0).contains(&sqnr), "{sqnr}");
        assert!(acc.why_absent.is_empty());
    }

    #[test]
    fn all_zero_outputs_give_reasons_not_nan() {
        let zeros = vec![0.0; 8];
        let acc = compare_values(&zeros, &zeros);
        assert_eq!(acc.cosine, None);
        assert_eq!(acc.sqnr_db, None);
        assert_eq!(acc.max_abs_error, Some(0.0));
        assert!(acc.why_absent["cosine"].contains("all zeros"));
        assert!(acc.why_absent["sqnr_db"].contains("all zeros"));
        let text = toml::to_string(&acc).unwrap();
        assert!(!text.to_lowercase().contains("nan"), "{text}");
    }

    #[test]
    fn every_absence_is_spelled_and_judged_by_its_kind() {
        for (kind, word, agree) in [
            (Absence::BothZero, "both-zero", true),
            (Absence::Identical, "identical", true),
            (Absence::ReferenceZero, "reference-zero", false),
            (Absence::OutputZero, "output-zero", false),
            (Absence::ReferenceNonFinite, "reference-non-finite", false),
            (Absence::OutputNonFinite, "output-non-finite", false),
            (Absence::Mismatch, "mismatch", false),
            (Absence::Empty, "empty", false),
            (Absence::Unreadable, "unreadable", false),
            (Absence::ForwardFailed, "forward-failed", false),
            (Absence::NotCompared, "not-compared", false),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{word}\""));
            assert_eq!(kind.outputs_agree(), agree, "{word}");
            // The verdict goes by the kind, whatever the words say.
            let mut acc = Accuracy::default();
            acc.worst
                .mark_absent("cosine", kind, "both outputs are all zeros (words only)");
            let verdict = AccuracyThresholds::default().judge(&acc);
            assert_eq!(verdict.is_ok(), agree, "{word}: {verdict:?}");
        }
        let zeros = vec![0.0; 4];
        let acc = compare_values(&zeros, &zeros);
        assert_eq!(acc.absent_kind["cosine"], Absence::BothZero);
        let text = toml::to_string(&acc).unwrap();
        assert!(text.contains("cosine = \"both-zero\""), "{text}");
        assert_eq!(toml::from_str::<OutputAccuracy>(&text).unwrap(), acc);
        let collapsed = compare_values(&[1.0, 2.0], &[0.0, 0.0]);
        assert_eq!(collapsed.absent_kind["cosine"], Absence::OutputZero);
        let several = combine(vec![compare_values(&[1.0], &[1.5]), collapsed], None);
        assert_eq!(
            several.worst.absent_kind.get("cosine"),
            None,
            "output 0 has one"
        );
        let both = combine(
            vec![
                compare_values(&[1.0, 2.0], &[0.0, 0.0]),
                compare_values(&[1.0], &[f64::NAN]),
            ],
            None,
        );
        assert_eq!(both.worst.absent_kind["cosine"], Absence::OutputZero);
        assert!(both.worst.why_absent["cosine"].starts_with("output 0: "));
        assert!(!both.worst.absent_kind.contains_key("max_abs_error"));
        assert_eq!(
            both.outputs[1].absent_kind["max_abs_error"],
            Absence::OutputNonFinite
        );
    }

    #[test]
    fn identical_outputs_have_no_sqnr_and_cosine_one() {
        let v = vec![1.0, -2.0, 3.0];
        let acc = compare_values(&v, &v);
        assert_eq!(acc.cosine, Some(1.0));
        assert!(acc.why_absent["sqnr_db"].contains("identical"));
    }

    #[test]
    fn overflow_is_reported_in_words() {
        let acc = compare_values(&[1.0, 2.0], &[f64::INFINITY, 2.0]);
        assert_eq!(acc.cosine, None);
        assert_eq!(acc.max_abs_error, None);
        assert!(acc.why_absent["cosine"].contains("1 of 2"));
    }

    #[test]
    fn combine_takes_the_worst_output() {
        let a = compare_values(&[1.0, 0.0], &[1.0, 0.1]);
        let b = compare_values(&[1.0, 0.0], &[1.0, 0.5]);
        let acc = combine(vec![a.clone(), b.clone()], None);
        assert_eq!(acc.worst.cosine, b.cosine);
        assert_eq!(acc.worst.max_abs_error, Some(0.5));
        assert_eq!(acc.outputs.len(), 2);
        let single = combine(vec![a.clone()], None);
        assert!(single.outputs.is_empty());
        assert_eq!(single.worst, a);
    }

    #[test]
    fn outputs_collapsed_to_zeros_fail_the_verdict_with_the_reason() {
        // The case from the field: FP32 outputs about 1e-9, INT8 all zeros.
        let reference: Vec<f64> = (0..10).map(|i| (4.5 - i as f64) * 1e-9).collect();
        let zeros = vec![0.0; 10];
        let acc = combine(
            vec![compare_values(&reference, &zeros)],
            top1_agreement(&reference, &zeros, 10),
        );
        let why = AccuracyThresholds::default().judge(&acc).unwrap_err();
        assert!(
            why.contains("this precision's output is all zeros"),
            "{why}"
        );
        assert!(why.contains("SQNR 0.0 dB"), "{why}");
        let strict = AccuracyThresholds {
            min_top1_agreement: 0.9,
            ..AccuracyThresholds::default()
        };
        let why = strict.judge(&acc).unwrap_err();
        assert!(why.contains("top-1 agreement 0.000"), "{why}");
    }

    #[test]
    fn close_or_identical_outputs_pass_and_thresholds_can_be_loosened() {
        let reference: Vec<f64> = (0..100).map(|i| (i as f64 * 0.1).sin()).collect();
        let close: Vec<f64> = reference.iter().map(|v| v + 1e-3).collect();
        let t = AccuracyThresholds::default();
        assert_eq!(
            t.judge(&combine(vec![compare_values(&reference, &close)], None)),
            Ok(())
        );
        assert_eq!(
            t.judge(&combine(vec![compare_values(&reference, &reference)], None)),
            Ok(())
        );
        let zeros = vec![0.0; 4];
        assert_eq!(
            t.judge(&combine(vec![compare_values(&zeros, &zeros)], None)),
            Ok(())
        );

        let noisy: Vec<f64> = reference.iter().map(|v| v + 0.2).collect();
        let acc = combine(vec![compare_values(&reference, &noisy)], None);
        let why = t.judge(&acc).unwrap_err();
        assert!(why.contains("below min_sqnr_db 20"), "{why}");
        let loose = t.with(&AccuracyOverrides {
            min_sqnr_db: Some(5.0),
            min_cosine: Some(0.9),
            ..AccuracyOverrides::default()
        });
        assert_eq!(loose.min_top1_agreement, t.min_top1_agreement);
        assert_eq!(loose.judge(&acc), Ok(()));
    }

    #[test]
    fn thresholds_out_of_range_name_the_key() {
        let bad = AccuracyThresholds {
            min_top1_agreement: 1.5,
            ..AccuracyThresholds::default()
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.knob, crate::job::bounds::Knob::MinTop1Agreement);
        assert!(e.to_string().contains("`min_top1_agreement`"), "{e}");
        assert!(AccuracyThresholds::default().validate().is_ok());
    }

    #[test]
    fn top1_counts_matching_rows() {
        let reference = [0.1, 0.9, 0.8, 0.2];
        let candidate = [0.2, 0.7, 0.1, 0.3];
        assert_eq!(top1_agreement(&reference, &candidate, 2), Some(0.5));
        assert_eq!(top1_agreement(&reference, &candidate, 3), None);
    }
}
