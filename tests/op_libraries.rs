//! Operator libraries end to end: a scripted model calling torchvision's
//! operators (tests/fixtures/models/torchvision_ops.pt) measured with
//! torchvision's library, found where `make test-deps` put it
//! (scripts/install-torchvision.sh); and the errors when a library named by
//! `op_libraries` is missing or a namespace has no library.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// torchvision's operator library, installed (once per cache) the way
/// `make test-deps` installs it.
fn torchvision_library() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-torchvision.sh");
    let out = Command::new(&script)
        .output()
        .expect("scripts/install-torchvision.sh runs");
    assert!(out.status.success(), "{}", text(&out));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// `precisiond run` (FP32 unless `extra` names precisions) with `env` set
/// for it and its worker.
fn run_fp32(model: &Path, extra: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = precisiond();
    cmd.arg("run")
        .arg(model)
        .args(["--no-probe", "--threads", "2", "--max-seconds", "0.3"])
        .args(["--devices", "cpu"])
        .args(extra);
    if !extra.contains(&"--precisions") {
        cmd.args(["--precisions", "fp32"]);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().expect("precisiond runs")
}

fn fp32_status(report: &toml::Table) -> Option<String> {
    report.get("results")?.as_array()?.iter().find_map(|r| {
        (r.get("precision")?.as_str()? == "fp32")
            .then(|| r.get("status")?.as_str().map(str::to_owned))
            .flatten()
    })
}

fn error_of(report: &toml::Table) -> String {
    assert_eq!(report["status"].as_str(), Some("failed"), "{report:#?}");
    report["error"].as_str().unwrap().to_owned()
}

#[test]
fn a_model_calling_torchvision_operators_is_measured_with_torchvisions_library() {
    let library = torchvision_library();
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("torchvision_ops.pt", dir.path());
    // INT8 too: the quantizing process loads the worker's libraries again.
    let out = run_fp32(&model, &["--precisions", "fp32,int8"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report = report_of(&model);
    assert_eq!(fp32_status(&report).as_deref(), Some("ok"), "{report:#?}");
    let int8 = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["precision"].as_str() == Some("int8"))
        .expect("an int8 result");
    assert_eq!(int8["status"].as_str(), Some("ok"), "{int8:#?}");
    // The report says which library registered the operators.
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let library = library.display().to_string();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("operator libraries") && n.contains(&library)),
        "no note names {library}: {notes:#?}"
    );
}

#[test]
fn without_torchvisions_library_the_error_names_the_namespace_and_the_setting() {
    // An empty cache: the worker finds torchvision's library nowhere.
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let model = copy_fixture("torchvision_ops.pt", dir.path());
    let out = run_fp32(&model, &[], &[("PRECISIOND_CACHE", cache.path())]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = error_of(&report_of(&model));
    assert!(error.contains("`torchvision`"), "{error}");
    assert!(error.contains("op_libraries"), "{error}");
    // ... and where torchvision's library was looked for.
    let expected = cache
        .path()
        .join("torchvision-0.28.0/ops/libtorchvision.so");
    assert!(error.contains(&expected.display().to_string()), "{error}");
    assert!(error.contains("scripts/install-torchvision.sh"), "{error}");

    // Named by `--op-library` (the `op_libraries` knob), the same library
    // serves the model with the default search finding nothing.
    let library = torchvision_library();
    let out = run_fp32(
        &model,
        &["--op-library", library.to_str().unwrap()],
        &[("PRECISIOND_CACHE", cache.path())],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fp32_status(&report_of(&model)).as_deref(), Some("ok"));
}

#[test]
fn an_op_library_that_is_missing_is_an_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    // Named on the command line (the config file's key).
    let out = run_fp32(&model, &["--op-library", "/nonexistent/libmissing.so"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = error_of(&report_of(&model));
    assert!(
        error.contains("cannot load the operator library /nonexistent/libmissing.so")
            && error.contains("op_libraries"),
        "{error}"
    );

    // Named by the settings file, relative to it.
    std::fs::write(
        dir.path().join("mlp.pt.toml"),
        "op_libraries = [\"ops/libmissing.so\"]\n",
    )
    .unwrap();
    let out = run_fp32(&model, &[], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let error = error_of(&report_of(&model));
    let expected = dir.path().join("ops/libmissing.so");
    assert!(
        error.contains(&expected.display().to_string()) && error.contains("mlp.pt.toml"),
        "{error}"
    );
}
