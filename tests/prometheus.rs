//! The node_exporter textfile (`precisiond::daemon::prometheus`) made from
//! real reports (tests/fixtures/reports: `precisiond run` on mlp.pt, and a
//! run on a Jetson's recorded sensors with `[results.energy]`), checked by
//! promtool where it is installed and by a parser always.

mod common;

use precisiond::daemon::prometheus::{exposition, DaemonFacts};
use precisiond_core::report::{Report, Status};
use std::collections::{BTreeMap, HashMap};

fn report(name: &str) -> Report {
    let path = common::fixtures_dir().join("reports").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn facts() -> DaemonFacts {
    DaemonFacts {
        queue_length: 2,
        failures_total: 1,
        measuring: false,
    }
}

/// The samples of `metric`, each as its labels (name -> value) and value.
fn samples(text: &str, metric: &str) -> Vec<(HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| common::parse_prometheus_sample(l).unwrap())
        .filter(|(name, _, _)| name == metric)
        .map(|(_, labels, v)| (labels.into_iter().collect(), v))
        .collect()
}

fn one(text: &str, metric: &str, model: &str, precision: &str, extra: Option<(&str, &str)>) -> f64 {
    let found: Vec<f64> = samples(text, metric)
        .into_iter()
        .filter(|(l, _)| {
            l.get("model").map(String::as_str) == Some(model)
                && l.get("precision").map(String::as_str) == Some(precision)
                && extra.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
        })
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{metric} {model} {precision} {extra:?}:\n{text}"
    );
    found[0]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn real_reports_give_valid_metrics_in_base_units() {
    let mlp = report("mlp-report.toml");
    let energy = report("jetson-energy-report.toml");
    let reports = vec![
        ("mlp.pt".to_owned(), mlp.clone()),
        ("energy.pt".to_owned(), energy.clone()),
    ];
    let text = exposition(&reports, &facts());
    let parsed = common::check_prometheus_text(&text);

    for (name, r) in [("mlp.pt", &mlp), ("energy.pt", &energy)] {
        for result in &r.results {
            let p = result.precision.name();
            let labels_ok = samples(&text, "precisiond_result_ok")
                .into_iter()
                .filter(|(l, _)| l["model"] == name && l["precision"] == p)
                .collect::<Vec<_>>();
            assert_eq!(labels_ok.len(), 1);
            let l = &labels_ok[0].0;
            assert_eq!(l["device"], result.device.to_string());
            assert_eq!(l["runtime"], "native");
            assert_eq!(labels_ok[0].1, 1.0);
            let lat = result.latency_ms.as_ref().unwrap();
            for (q, ms) in [("0.5", lat.median), ("0.9", lat.p90), ("0.99", lat.p99)] {
                let s = one(
                    &text,
                    "precisiond_latency_seconds",
                    name,
                    p,
                    Some(("quantile", q)),
                );
                assert!(close(s, ms / 1000.0), "{name} {p} q{q}: {s} vs {ms} ms");
            }
            if let Some(speedup) = result.speedup_vs_fp32 {
                assert!(close(
                    one(&text, "precisiond_speedup_ratio", name, p, None),
                    speedup
                ));
            }
            if let Some(c) = result.accuracy.as_ref().and_then(|a| a.worst.cosine) {
                assert!(close(
                    one(&text, "precisiond_accuracy_cosine", name, p, None),
                    c
                ));
            }
            let emulated = one(&text, "precisiond_emulated", name, p, None);
            assert_eq!(emulated, if result.native { 0.0 } else { 1.0 });
        }
    }
    // Energy only where the report has a figure: millijoules to joules.
    let joules = samples(&text, "precisiond_energy_joules_per_inference");
    assert_eq!(joules.len(), energy.results.len());
    assert!(joules.iter().all(|(l, _)| l["model"] == "energy.pt"));
    for result in &energy.results {
        let mj = result
            .energy
            .as_ref()
            .unwrap()
            .energy_mj_per_inference
            .unwrap();
        let j = one(
            &text,
            "precisiond_energy_joules_per_inference",
            "energy.pt",
            result.precision.name(),
            None,
        );
        assert!(close(j, mj / 1000.0), "{j} J vs {mj} mJ");
    }
    assert_eq!(
        samples(&text, "precisiond_reports"),
        vec![
            (HashMap::from([("status".into(), "ok".into())]), 2.0),
            (HashMap::from([("status".into(), "failed".into())]), 0.0)
        ]
    );
    assert!(text.contains("\nprecisiond_failures_total 1\n"));
    assert!(text.contains("\nprecisiond_queue_length 2\n"));
    assert!(text.contains("\nprecisiond_build_info{version=\"0.1.0\"} 1\n"));

    // The parser crate agrees on the types.
    use prometheus_parse::Value;
    let failures = parsed
        .iter()
        .find(|s| s.metric == "precisiond_failures_total")
        .unwrap();
    assert_eq!(failures.value, Value::Counter(1.0));
    let latencies: Vec<_> = parsed
        .iter()
        .filter(|s| s.metric == "precisiond_latency_seconds")
        .collect();
    assert_eq!(latencies.len(), mlp.results.len() + energy.results.len());
    for s in latencies {
        let Value::Summary(quantiles) = &s.value else {
            panic!("{s:?}");
        };
        assert_eq!(quantiles.len(), 3);
        assert!(quantiles.iter().all(|q| q.count > 0.0 && q.count < 1.0));
    }
    // The summary's count is the timed calls.
    let fp32 = &mlp.results[0];
    assert_eq!(
        one(
            &text,
            "precisiond_latency_seconds_count",
            "mlp.pt",
            "fp32",
            None
        ),
        fp32.latency_ms.as_ref().unwrap().iterations as f64
    );
}

#[test]
fn each_family_has_help_and_type_once_and_its_samples_together() {
    let reports = vec![
        ("mlp.pt".to_owned(), report("mlp-report.toml")),
        ("energy.pt".to_owned(), report("jetson-energy-report.toml")),
    ];
    let text = exposition(&reports, &facts());
    let mut help: BTreeMap<String, usize> = BTreeMap::new();
    let mut kind: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut finished: Vec<String> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            *help.entry(name.clone()).or_default() += 1;
            let type_line = lines.next().unwrap();
            let mut parts = type_line.strip_prefix("# TYPE ").unwrap().split(' ');
            assert_eq!(parts.next(), Some(name.as_str()), "TYPE follows HELP");
            let t = parts.next().unwrap().to_owned();
            assert!(t == "gauge" || t == "counter" || t == "summary", "{t}");
            assert!(kind.insert(name.clone(), t).is_none(), "TYPE twice: {name}");
            if let Some(done) = current.replace(name) {
                finished.push(done);
            }
            continue;
        }
        let (mut name, _, _) = common::parse_prometheus_sample(line).unwrap();
        if let Some(family) = current.as_ref().filter(|c| kind[*c] == "summary") {
            for suffix in ["_sum", "_count"] {
                if name.strip_suffix(suffix) == Some(family.as_str()) {
                    name = family.clone();
                }
            }
        }
        assert_eq!(Some(&name), current.as_ref(), "{line} outside its family");
        assert!(!finished.contains(&name));
    }
    assert!(help.values().all(|&n| n == 1), "{help:?}");
    for name in [
        "precisiond_latency_seconds",
        "precisiond_speedup_ratio",
        "precisiond_accuracy_cosine",
        "precisiond_energy_joules_per_inference",
        "precisiond_emulated",
        "precisiond_result_ok",
        "precisiond_reports",
        "precisiond_failures_total",
        "precisiond_queue_length",
        "precisiond_build_info",
    ] {
        assert!(kind.contains_key(name), "{name} missing:\n{text}");
    }
    assert_eq!(kind["precisiond_failures_total"], "counter");
    // Names by the conventions: base units, counters end in _total.
    for (name, t) in &kind {
        assert!(name.starts_with("precisiond_"));
        assert_eq!(t == "counter", name.ends_with("_total"), "{name}");
        assert!(!name.contains("_ms") && !name.contains("milli"), "{name}");
    }
}

#[test]
fn label_values_are_escaped_and_series_stay_unique() {
    let base = report("mlp-report.toml");
    let odd = "we\"ird\\name\nwith space.pt".to_owned();
    // An AOTInductor family's TorchScript results: the same device and
    // precision, told apart by `runtime`.
    let mut beside = base.clone();
    let extra: Vec<_> = base
        .results
        .iter()
        .cloned()
        .map(|mut r| {
            r.runtime = Some(precisiond_core::report::Runtime::Torchscript);
            r
        })
        .collect();
    beside.results.extend(extra);
    // A failed report, and a failed result.
    let mut failed = base.clone();
    failed.status = Status::Failed;
    failed.results.truncate(1);
    failed.results[0].status = Status::Failed;
    failed.results[0].latency_ms = None;
    let reports = vec![
        (odd.clone(), beside),
        // The same file name in another drop folder: exported once.
        (odd.clone(), base.clone()),
        ("broken.pt".to_owned(), failed),
    ];
    let text = exposition(&reports, &DaemonFacts::default());
    common::check_prometheus_text(&text);
    assert!(
        text.contains("model=\"we\\\"ird\\\\name\\nwith space.pt\""),
        "{text}"
    );
    assert!(!text.contains(&odd));
    let ok = samples(&text, "precisiond_result_ok");
    let of_odd: Vec<_> = ok.iter().filter(|(l, _)| l["model"] == odd).collect();
    assert_eq!(of_odd.len(), 2 * base.results.len());
    assert_eq!(
        of_odd
            .iter()
            .filter(|(l, _)| l["runtime"] == "torchscript")
            .count(),
        base.results.len()
    );
    let broken: Vec<_> = ok
        .iter()
        .filter(|(l, _)| l["model"] == "broken.pt")
        .collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].1, 0.0);
    assert!(samples(&text, "precisiond_latency_seconds")
        .iter()
        .all(|(l, _)| l["model"] != "broken.pt"));
    assert!(text.contains("\nprecisiond_reports{status=\"ok\"} 2\n"));
    assert!(text.contains("\nprecisiond_reports{status=\"failed\"} 1\n"));
    // Every series once.
    let mut series: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect();
    let n = series.len();
    series.sort();
    series.dedup();
    assert_eq!(series.len(), n, "duplicate series:\n{text}");
}

#[test]
fn a_slower_rerun_shows_as_a_regression_sample() {
    let mut mlp = report("mlp-report.toml");
    mlp.results[0].regression = Some(true);
    if let Some(second) = mlp.results.get_mut(1) {
        second.regression = Some(false);
    }
    let text = exposition(&[("mlp.pt".to_owned(), mlp.clone())], &facts());
    common::check_prometheus_text(&text);
    let flagged = samples(&text, "precisiond_regression");
    let p0 = mlp.results[0].precision.name();
    assert!(
        flagged
            .iter()
            .any(|(l, v)| l["precision"] == p0 && *v == 1.0),
        "{text}"
    );
    // Results without a verdict have no sample.
    let with_verdict = mlp
        .results
        .iter()
        .filter(|r| r.regression.is_some())
        .count();
    assert_eq!(flagged.len(), with_verdict);
}

/// FP16 measured two ways (issue #22): the failed cast and the autocast
/// that worked are two series, told apart by `method`.
#[test]
fn a_precision_measured_two_ways_has_a_series_per_method() {
    let mut both = report("mlp-report.toml");
    let fp16 = both
        .results
        .iter()
        .position(|r| r.precision == precisiond_core::precision::Precision::Fp16)
        .expect("an fp16 result");
    let mut autocast = both.results[fp16].clone();
    autocast.method = precisiond_core::report::Method::Autocast;
    both.results[fp16].status = Status::Failed;
    both.results[fp16].latency_ms = None;
    both.results.push(autocast);
    let text = exposition(&[("mlp.pt".to_owned(), both)], &DaemonFacts::default());
    common::check_prometheus_text(&text);
    let ok = |method| {
        one(
            &text,
            "precisiond_result_ok",
            "mlp.pt",
            "fp16",
            Some(("method", method)),
        )
    };
    assert_eq!(ok("cast"), 0.0);
    assert_eq!(ok("autocast"), 1.0);
    let latency: Vec<_> = samples(&text, "precisiond_latency_seconds")
        .into_iter()
        .filter(|(l, _)| l["precision"] == "fp16")
        .collect();
    assert!(!latency.is_empty() && latency.iter().all(|(l, _)| l["method"] == "autocast"));
}
