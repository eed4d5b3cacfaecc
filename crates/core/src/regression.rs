//! A model measured again (a new file, new settings, a new precisiond)
//! keeps the previous run's medians beside the new ones, and a slowdown
//! beyond the previous run's confidence interval is flagged: the report,
//! `summarize` and the metrics all read it from here.

use crate::conditions::Quality;
use crate::report::{PrecisionResult, PreviousRun, Report, Status};

/// Sets `previous` (and `regression`) on each result of `current` that the
/// report it replaces (`previous`) measured too, on the same device, in
/// the same precision and runtime.
pub fn attach(previous: &Report, current: &mut Report) {
    for result in &mut current.results {
        let Some(before) = previous.results.iter().find(|p| same_place(p, result)) else {
            continue;
        };
        let (Some(before_lat), Some(now)) = (&before.latency_ms, &result.latency_ms) else {
            continue;
        };
        if before.status != Status::Ok || result.status != Status::Ok {
            continue;
        }
        let spoiled = |q: Option<Quality>| q.is_some_and(|q| q != Quality::Clean);
        let regression = match before_lat.median_ci {
            // Both timings must be the model's speed for the flag to mean
            // anything; otherwise it is withheld (None), and said.
            _ if spoiled(before.quality) || spoiled(result.quality) => None,
            Some([_, high]) => Some(now.median > high),
            None => None,
        };
        result.previous = Some(PreviousRun {
            median_ms: before_lat.median,
            median_ci: before_lat.median_ci,
            finished: previous.run.finished,
            model_sha256: previous.model.sha256.clone(),
        });
        result.regression = regression;
        match regression {
            Some(true) => result.notes.push(format!(
                "REGRESSION: slower than the previous run (median {:.3} ms, measured {}): \
                 {:.3} ms is above that run's 95% confidence interval, which ends at {:.3} ms",
                before_lat.median,
                previous.run.finished,
                now.median,
                before_lat.median_ci.map_or(f64::NAN, |c| c[1])
            )),
            None if before_lat.median_ci.is_some() => result.notes.push(
                "no regression verdict against the previous run: one of the two timings was \
                 contended or throttled"
                    .into(),
            ),
            _ => {}
        }
    }
}

fn same_place(a: &PrecisionResult, b: &PrecisionResult) -> bool {
    a.device == b.device
        && a.precision == b.precision
        && a.method == b.method
        && a.runtime == b.runtime
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::LatencyStats;
    use crate::precision::Precision;
    use crate::report::Method;

    fn report_with(median: f64, ci: Option<[f64; 2]>, quality: Option<Quality>) -> Report {
        let mut r = crate::report::failed_report(
            std::path::Path::new("/d/m.pt"),
            String::new(),
            crate::report::now(),
            2,
        );
        r.status = Status::Ok;
        r.error = None;
        let mut result = PrecisionResult::not_measured(
            crate::devices::Device::Cpu,
            Precision::Fp32,
            Status::Ok,
            Method::Cast,
            String::new(),
        );
        let mut lat = LatencyStats::from_samples(&[median; 10]).unwrap();
        lat.median_ci = ci;
        result.latency_ms = Some(lat);
        result.quality = quality;
        r.results.push(result);
        r
    }

    #[test]
    fn a_median_above_the_previous_interval_is_a_regression() {
        let before = report_with(2.0, Some([1.9, 2.1]), Some(Quality::Clean));
        let mut now = report_with(2.5, Some([2.4, 2.6]), Some(Quality::Clean));
        attach(&before, &mut now);
        let r = &now.results[0];
        assert_eq!(r.regression, Some(true));
        assert_eq!(r.previous.as_ref().unwrap().median_ms, 2.0);
        assert!(r.notes[0].starts_with("REGRESSION"), "{:?}", r.notes);

        let mut inside = report_with(2.05, Some([2.0, 2.1]), Some(Quality::Clean));
        attach(&before, &mut inside);
        assert_eq!(inside.results[0].regression, Some(false));
        let mut faster = report_with(1.0, Some([0.9, 1.1]), Some(Quality::Clean));
        attach(&before, &mut faster);
        assert_eq!(faster.results[0].regression, Some(false));
    }

    #[test]
    fn a_contended_timing_gets_no_verdict_and_other_places_no_previous() {
        let before = report_with(2.0, Some([1.9, 2.1]), Some(Quality::Contended));
        let mut now = report_with(3.0, Some([2.9, 3.1]), Some(Quality::Clean));
        attach(&before, &mut now);
        assert_eq!(now.results[0].regression, None);
        assert!(now.results[0].previous.is_some());
        assert!(now.results[0].notes[0].contains("contended"));

        let mut elsewhere = report_with(3.0, Some([2.9, 3.1]), Some(Quality::Clean));
        elsewhere.results[0].device = crate::devices::Device::Cuda(0);
        attach(&before, &mut elsewhere);
        assert!(elsewhere.results[0].previous.is_none());
    }
}
