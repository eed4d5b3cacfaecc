//! `precisiond run` end to end: real binaries, real libtorch, real models.

mod common;

use common::*;
use std::path::Path;

fn results(report: &toml::Table) -> Vec<toml::Table> {
    report["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| r.as_table().unwrap().clone())
        .collect()
}

fn result_for(report: &toml::Table, precision: &str) -> toml::Table {
    results(report)
        .into_iter()
        .find(|r| r["precision"].as_str() == Some(precision))
        .unwrap_or_else(|| panic!("no {precision} result"))
}

/// Every key the report contract in design.md promises.
fn assert_contract(report: &toml::Table) {
    assert_eq!(report["schema_version"].as_integer(), Some(1));
    let model = report["model"].as_table().unwrap();
    for key in ["file", "sha256", "bytes", "format"] {
        assert!(model.contains_key(key), "model.{key} missing");
    }
    assert_eq!(model["sha256"].as_str().unwrap().len(), 64);
    let run = report["run"].as_table().unwrap();
    for key in [
        "started",
        "finished",
        "precisiond",
        "libtorch",
        "threads",
        "host",
    ] {
        assert!(run.contains_key(key), "run.{key} missing");
    }
    assert!(run["started"].is_datetime());
    assert_eq!(run["libtorch"].as_str(), Some("2.13.0"));
    let cpu = report["hardware"]["cpu"].as_table().expect("hardware.cpu");
    for key in ["model", "arch"] {
        assert!(cpu.contains_key(key), "hardware.cpu.{key} missing");
    }
    for p in ["fp32", "fp16", "bf16", "int8"] {
        assert!(
            cpu[p]["native"].is_bool(),
            "hardware.cpu.{p}.native missing"
        );
        assert!(cpu[p]["reason"].is_str());
    }
    for r in results(report) {
        for key in [
            "device",
            "precision",
            "status",
            "reason",
            "native",
            "method",
        ] {
            assert!(r.contains_key(key), "results.{key} missing in {r:?}");
        }
        if r["status"].as_str() == Some("ok") {
            let lat = r["latency_ms"].as_table().expect("latency_ms");
            for key in [
                "median",
                "mean",
                "p90",
                "p99",
                "min",
                "max",
                "stddev",
                "iterations",
            ] {
                assert!(lat.contains_key(key), "latency_ms.{key} missing");
            }
            let median = lat["median"].as_float().unwrap();
            assert!(median > 0.0);
            assert!(lat["min"].as_float().unwrap() <= median);
            assert!(lat["max"].as_float().unwrap() >= lat["p99"].as_float().unwrap());
            assert!(lat["iterations"].as_integer().unwrap() >= 1);
            if r["precision"].as_str() != Some("fp32")
                && r["method"].as_str() != Some("prequantized")
            {
                let acc = r["accuracy"].as_table().expect("accuracy for non-fp32");
                assert!(acc.contains_key("cosine") || acc.contains_key("why_absent"));
                // A speedup, or a note why it is withheld (a contended timing).
                let withheld = r.get("notes").and_then(|n| n.as_array()).is_some_and(|n| {
                    n.iter()
                        .any(|n| n.as_str().unwrap().contains("speedup_vs_fp32 withheld"))
                });
                assert!(r.contains_key("speedup_vs_fp32") || withheld, "{r:?}");
            }
            // Every timing says under what conditions it was taken.
            let quality = r["quality"].as_str().expect("quality");
            assert!(["clean", "contended", "throttled"].contains(&quality));
            let conditions = r["conditions"].as_table().expect("conditions");
            for key in ["others_share", "worker_cpu_seconds", "involuntary_switches"] {
                assert!(conditions.contains_key(key), "conditions.{key} missing");
            }
            if quality != "clean" {
                assert!(conditions.contains_key("why"), "{conditions:?}");
            }
        } else {
            assert!(
                !r["reason"].as_str().unwrap().is_empty(),
                "a non-ok result says why: {r:?}"
            );
        }
    }
}

fn no_nan(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".report.toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for bad in ["= nan", "= inf", "= -inf", "= +inf"] {
                assert!(!text.contains(bad), "{bad} in {}", path.display());
            }
        }
    }
}

#[test]
fn every_fixture_gets_a_report_that_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "cnn_residual.pt",
        "mlp.pt",
        "two_inputs.pt",
        "tuple_out.pt",
        "control_flow.pt",
        "transformer_block.pt",
        "int_input.pt",
    ] {
        let model = copy_fixture(name, dir.path());
        let out = run_quick(&model, &["--precisions", "fp32,fp16,bf16"]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let report = report_of(&model);
        assert_eq!(report["status"].as_str(), Some("ok"), "{name}");
        assert_contract(&report);
        assert_eq!(results(&report).len(), 3, "{name}");
        for p in ["fp32", "fp16", "bf16"] {
            assert_eq!(
                result_for(&report, p)["status"].as_str(),
                Some("ok"),
                "{name} {p}"
            );
        }
        let bf16 = result_for(&report, "bf16");
        let cosine = bf16["accuracy"]["cosine"].as_float().unwrap();
        assert!(cosine > 0.99, "{name}: bf16 cosine {cosine}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("median ms") && stdout.contains("bf16"),
            "{stdout}"
        );
    }
    no_nan(dir.path());
}

#[test]
fn tuple_outputs_are_compared_output_by_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("tuple_out.pt", dir.path());
    let out = run_quick(&model, &["--precisions", "fp32,bf16"]);
    assert!(out.status.success(), "{}", text(&out));
    let bf16 = result_for(&report_of(&model), "bf16");
    let outputs = bf16["accuracy"]["outputs"]
        .as_array()
        .expect("per-output accuracy");
    assert_eq!(outputs.len(), 2);
}

#[test]
fn inputs_are_inferred_from_the_first_weight_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let cnn = copy_fixture("cnn_residual.pt", dir.path());
    assert!(run_quick(&cnn, &["--precisions", "fp32"]).status.success());
    let report = report_of(&cnn);
    assert_eq!(report["input_source"].as_str(), Some("inferred"));
    let shape: Vec<i64> = report["inputs"][0]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_integer().unwrap())
        .collect();
    assert_eq!(shape, vec![1, 3, 224, 224]);

    let mlp = copy_fixture("mlp.pt", dir.path());
    assert!(run_quick(&mlp, &["--precisions", "fp32"]).status.success());
    let report = report_of(&mlp);
    assert_eq!(report["inputs"][0]["shape"].as_array().unwrap().len(), 2);
    assert_eq!(report["inputs"][0]["shape"][1].as_integer(), Some(64));
}

#[test]
fn the_settings_file_describes_several_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("two_inputs.pt", dir.path());
    let out = run_quick(&model, &["--precisions", "fp32"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = report_of(&model);
    assert_eq!(report["input_source"].as_str(), Some("settings"));
    assert_eq!(report["inputs"].as_array().unwrap().len(), 2);
    assert!(report["model"]["settings_sha256"].is_str());

    // Without its settings file the model cannot be inferred: the error
    // names the file to write and shows an example.
    std::fs::remove_file(dir.path().join("two_inputs.pt.toml")).unwrap();
    let out = run_quick(&model, &["--precisions", "fp32"]);
    assert!(!out.status.success());
    let report = report_of(&model);
    assert_eq!(report["status"].as_str(), Some("failed"));
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("two_inputs.pt.toml") && error.contains("[[inputs]]"),
        "{error}"
    );
}

#[test]
fn an_explicit_settings_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    let out = run_quick(&model, &["--settings", "/nonexistent/settings.toml"]);
    assert!(!out.status.success());
    assert!(report_of(&model)["error"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/settings.toml"));
}

fn assert_failed_cleanly(model: &Path, expect_in_error: &str) {
    let out = run_quick(model, &["--precisions", "fp32,bf16"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("frame #"),
        "{stderr}"
    );
    let report = report_of(model);
    assert_eq!(report["status"].as_str(), Some("failed"));
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(expect_in_error),
        "error {error:?} lacks {expect_in_error:?}"
    );
    assert!(
        !error.contains("Exception raised from"),
        "C++ stack in {error}"
    );
    assert_contract(&report);
}

#[test]
fn a_file_that_is_not_torchscript_fails_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("notes.pt");
    std::fs::write(&model, "this is not a model\n").unwrap();
    assert_failed_cleanly(&model, "is not a TorchScript model");
}

#[test]
fn a_truncated_file_fails_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mlp.pt")).unwrap();
    let model = dir.path().join("half.pt");
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert_failed_cleanly(&model, "truncated");
}

#[test]
fn a_forward_that_fails_on_the_given_inputs_fails_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    std::fs::write(
        dir.path().join("mlp.pt.toml"),
        "[[inputs]]\nshape = [1, 3]\ndtype = \"float32\"\n",
    )
    .unwrap();
    assert_failed_cleanly(&model, "forward() failed");
}

#[test]
fn a_missing_file_is_an_error_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("absent.pt");
    let out = run_quick(&model, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("absent.pt"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn the_report_is_replaced_atomically_and_no_temp_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    let report_path = dir.path().join("mlp.pt.report.toml");
    std::fs::write(&report_path, "schema_version = 1\nold = true\n").unwrap();

    // A reader polls the report while it is rewritten: every read must be
    // either the whole old file or the whole new one.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let path = report_path.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let text = std::fs::read_to_string(&path).expect("the report never disappears");
                let parsed: toml::Table = text.parse().expect("never half-written");
                assert!(parsed.contains_key("old") || parsed.contains_key("results"));
                reads += 1;
            }
            reads
        })
    };
    let out = run_quick(&model, &["--precisions", "fp32"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!report_of(&model).contains_key("old"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_tiny_budget_ends_on_the_budget_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("cnn_residual.pt", dir.path());
    // fp16 convolutions are slow on most CPUs; with a 1 ms budget every
    // precision stops on the budget after one timed call.
    let out = run_quick(
        &model,
        &["--precisions", "fp32,fp16", "--max-seconds", "0.001"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let fp16 = result_for(&report_of(&model), "fp16");
    assert_eq!(fp16["stop_reason"].as_str(), Some("time-budget"));
    assert_eq!(fp16["latency_ms"]["iterations"].as_integer(), Some(1));
    let notes: Vec<&str> = fp16["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(notes.iter().any(|n| n.contains("budget")), "{notes:?}");
}

#[test]
fn the_supervisor_binary_does_not_link_libtorch() {
    let out = std::process::Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_precisiond")])
        .output()
        .expect("readelf (binutils) is installed");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("NEEDED"), "{dynamic}");
    assert!(
        !dynamic.contains("libtorch") && !dynamic.contains("libc10"),
        "{dynamic}"
    );
}

#[test]
fn the_worker_runs_without_ld_library_path() {
    let out = worker()
        .args(["detect", "--no-probe"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_contention_threshold_out_of_range_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    for (flag, value) in [
        ("--busy-threshold", "25"),
        ("--contended-ci-percent", "150"),
        ("--contended-p90-ratio", "0.5"),
        ("--clock-drop-percent", "150"),
    ] {
        let out = run_quick(&model, &[flag, value]);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(
            !calibrated::report_path(&model).exists(),
            "no report written"
        );
    }
}
