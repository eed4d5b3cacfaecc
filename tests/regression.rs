//! A model measured again keeps the previous run's medians, and a slowdown
//! beyond that run's confidence interval is flagged. The previous run is a
//! real report of the same model, its FP32 median edited to half (or twice)
//! what this machine measures, so the outcome does not hang on this
//! machine's speed.

mod common;

use common::*;

fn fp32(report: &toml::Table) -> toml::Table {
    report["results"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone()
}

/// Rewrites the report beside `model` so its FP32 median is `factor` times
/// what was measured, with a tight interval and a clean timing.
fn scale_previous(model: &std::path::Path, factor: f64) -> f64 {
    let path = common::calibrated::report_path(model);
    let mut report: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let result = report["results"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    let lat = result["latency_ms"].as_table_mut().unwrap();
    let median = lat["median"].as_float().unwrap() * factor;
    lat.insert("median".into(), median.into());
    let ci = toml::Value::Array(vec![(median * 0.99).into(), (median * 1.01).into()]);
    lat.insert("median_ci".into(), ci);
    result.insert("quality".into(), "clean".into());
    std::fs::write(&path, toml::to_string(&report).unwrap()).unwrap();
    median
}

#[test]
fn a_slower_rerun_is_flagged_and_a_faster_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("cnn_residual.pt", dir.path());
    let run = || run_quick(&model, &["--precisions", "fp32", "--max-seconds", "0.5"]);
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(fp32(&report_of(&model)).get("previous").is_none());

    // The previous run twice as fast: this one is slower.
    let previous = scale_previous(&model, 0.5);
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let result = fp32(&report_of(&model));
    let before = result["previous"].as_table().unwrap();
    assert_eq!(before["median_ms"].as_float(), Some(previous));
    assert!(before["model_sha256"].as_str().unwrap().len() == 64);
    let clean = result.get("quality").and_then(|q| q.as_str()) == Some("clean");
    if clean {
        assert_eq!(result["regression"].as_bool(), Some(true), "{result:#?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("REGRESSION"), "{stdout}");
        // summarize says so too.
        let summary = precisiond()
            .arg("summarize")
            .arg(dir.path())
            .args(["--format", "json"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
        assert_eq!(json["rows"][0]["regression"], serde_json::Value::Bool(true));
        let shown = json["rows"][0]["previous_median_ms"].as_f64().unwrap();
        assert!(
            (shown - previous).abs() <= 1e-12 * previous,
            "{shown} vs {previous}"
        );
    } else {
        // A contended timing gets no verdict, and says so.
        assert!(result.get("regression").is_none(), "{result:#?}");
        skip_part(
            "the REGRESSION verdict and summarize's columns",
            "the rerun was timed under contention (a busy machine)",
        );
    }

    // The previous run twice as slow: no regression.
    scale_previous(&model, 2.0);
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    let result = fp32(&report_of(&model));
    assert_ne!(
        result.get("regression").and_then(|r| r.as_bool()),
        Some(true)
    );
}
