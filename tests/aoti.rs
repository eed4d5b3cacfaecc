//! AOTInductor families (`.pt2`): real packages compiled by
//! `scripts/make_aoti_fixtures.sh` (Inductor, for AVX2 so they run on any
//! x86-64 with it), loaded by the real worker through libtorch's
//! AOTIModelPackageLoader; packages with forged metadata for the
//! instruction-set verdict; a plain `torch.export.save` archive for the
//! refusal. The daemon's side (a variant dropped later) is in daemon.rs.

mod common;

use common::machine::{cpu_flags, runs_avx2_packages};
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn aoti_fixture(name: &str) -> PathBuf {
    fixtures_dir().join("aoti").join(name)
}

/// The family's packages that exist among the fixtures, copied into `dir`
/// as NAME.pt2 and NAME.PRECISION.pt2.
fn copy_family(dir: &Path, name: &str, precisions: &[&str]) -> PathBuf {
    let head = dir.join(format!("{name}.pt2"));
    std::fs::copy(aoti_fixture("tiny_cnn.pt2"), &head).unwrap();
    for p in precisions {
        std::fs::copy(
            aoti_fixture(&format!("tiny_cnn.{p}.pt2")),
            dir.join(format!("{name}.{p}.pt2")),
        )
        .unwrap();
    }
    head
}

fn result<'a>(report: &'a toml::Table, precision: &str) -> &'a toml::Table {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_table().unwrap())
        .find(|r| r["precision"].as_str() == Some(precision))
        .unwrap_or_else(|| panic!("no {precision} result in {report:#?}"))
}

/// Why the AVX2 fixtures' own behaviour goes unchecked on this CPU (where
/// they must be refused, which the tests check instead).
const NO_AVX2: &str =
    "this CPU lacks avx2, fma or f16c, which the AVX2 fixture packages need: checked that they are refused";

/// A copy of `from` whose packaged metadata JSON has `changes` applied.
fn forge(from: &Path, to: &Path, changes: &[(&str, &str)]) {
    let mut src = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if name.contains("/data/aotinductor/") && name.ends_with("_metadata.json") {
            let mut map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).unwrap();
            for (k, v) in changes {
                map.insert((*k).into(), serde_json::Value::String((*v).into()));
            }
            bytes = serde_json::to_vec(&map).unwrap();
        }
        out.start_file(name, stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn a_family_gets_one_report_with_each_package_timed_and_compared_with_fp32() {
    let dir = tempfile::tempdir().unwrap();
    // scripts/make_aoti_fixtures.sh makes (and checks) all four packages.
    let head = copy_family(dir.path(), "tiny", &["bf16", "int8"]);
    let out = run_quick(&head, &[]);
    let report = report_of(&head);
    if !runs_avx2_packages() {
        assert!(!out.status.success());
        let error = report["error"].as_str().unwrap();
        assert!(error.contains("AVX2"), "{error}");
        return skip_part("the packages' timings", NO_AVX2);
    }
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report["model"]["format"].as_str(), Some("aoti"));
    assert_eq!(report["input_source"].as_str(), Some("package metadata"));
    let listed: Vec<&str> = report["model"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["file"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["tiny.bf16.pt2", "tiny.int8.pt2"]);

    let fp32 = result(&report, "fp32");
    assert_eq!(fp32["status"].as_str(), Some("ok"), "{fp32:#?}");
    assert_eq!(fp32["method"].as_str(), Some("aoti"));
    assert_eq!(fp32["package"]["file"].as_str(), Some("tiny.pt2"));
    assert_eq!(fp32["package"]["cpu_isa"].as_str(), Some("AVX2"));
    assert!(fp32["latency_ms"]["median"].as_float().unwrap() > 0.0);

    let bf16 = result(&report, "bf16");
    assert_eq!(bf16["status"].as_str(), Some("ok"), "{bf16:#?}");
    assert_eq!(bf16["package"]["file"].as_str(), Some("tiny.bf16.pt2"));
    let cosine = bf16["accuracy"]["cosine"].as_float().unwrap();
    // BF16 keeps 8 bits of mantissa: the tiny CNN's logits stay aligned.
    assert!(cosine > 0.99, "bf16 cosine {cosine}");
    assert!(bf16["latency_ms"]["median"].as_float().unwrap() > 0.0);

    let fp16 = result(&report, "fp16");
    assert_eq!(fp16["status"].as_str(), Some("skipped"));
    let why = fp16["reason"].as_str().unwrap();
    assert!(
        why.contains("tiny.fp16.pt2") && why.contains("precisiond-export.py"),
        "{why}"
    );
    let q = result(&report, "int8");
    assert_eq!(q["status"].as_str(), Some("ok"), "{q:#?}");
    let cosine = q["accuracy"]["cosine"].as_float().unwrap();
    assert!(cosine > 0.9, "int8 cosine {cosine}");
    // The private copies libtorch loaded from were never named: nothing
    // is left in the state folder but what precisiond keeps there.
    let state = dir.path().join(".precisiond");
    for entry in std::fs::read_dir(&state).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".pt2") && !name.starts_with(".tmp"),
            "{name}"
        );
    }
}

#[test]
fn a_package_for_an_instruction_set_this_cpu_lacks_is_unsupported_with_both_sides_named() {
    let dir = tempfile::tempdir().unwrap();
    let head = copy_family(dir.path(), "tiny", &[]);
    // AMX with FP16 tiles: Granite Rapids and later. Where this CPU has
    // them all the package must run; elsewhere it must not be loaded.
    let wanted = ["amx_tile", "amx_bf16", "amx_int8", "amx_fp16"];
    forge(
        &aoti_fixture("tiny_cnn.bf16.pt2"),
        &dir.path().join("tiny.bf16.pt2"),
        &[
            ("AOTI_CPU_ISA", "AVX512 AVX512_VNNI AMX_TILE"),
            (
                "precisiond.arch_flags",
                "-mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma -mavx512vnni -mamx-tile \
                 -mamx-bf16 -mamx-int8 -mamx-fp16",
            ),
        ],
    );
    let out = run_quick(&head, &["--precisions", "fp32,bf16"]);
    let report = report_of(&head);
    if !runs_avx2_packages() {
        assert!(!out.status.success());
        let error = report["error"].as_str().unwrap();
        assert!(error.contains("AVX2"), "{error}");
        return skip_part("the verdict on the AMX package", NO_AVX2);
    }
    assert!(out.status.success(), "{}", text(&out));
    let bf16 = result(&report, "bf16");
    let flags = cpu_flags();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| !flags.iter().any(|x| x == f))
        .collect();
    if missing.is_empty() {
        assert_eq!(bf16["status"].as_str(), Some("ok"), "{bf16:#?}");
        return skip_part(
            "the refusal naming the missing flags",
            "this CPU has every AMX flag the forged package asks for",
        );
    }
    assert_eq!(bf16["status"].as_str(), Some("unsupported"), "{bf16:#?}");
    let why = bf16["reason"].as_str().unwrap();
    assert!(why.contains("AVX512 AVX512_VNNI AMX_TILE"), "{why}");
    for flag in &missing {
        assert!(why.contains(flag), "{flag} not named in: {why}");
    }
    assert!(bf16.get("latency_ms").is_none());
    // The FP32 package, compiled for AVX2, was measured beside it.
    assert_eq!(result(&report, "fp32")["status"].as_str(), Some("ok"));
}

#[test]
fn a_family_head_compiled_for_another_machine_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("arm.pt2");
    let other = if cfg!(target_arch = "x86_64") {
        "aarch64"
    } else {
        "x86_64"
    };
    forge(
        &aoti_fixture("tiny_cnn.pt2"),
        &head,
        &[("AOTI_MACHINE", other)],
    );
    let out = run_quick(&head, &[]);
    assert!(!out.status.success());
    let report = report_of(&head);
    assert_eq!(report["status"].as_str(), Some("failed"));
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains(other) && error.contains(std::env::consts::ARCH),
        "{error}"
    );
    assert!(error.contains("none was measured"), "{error}");
}

#[test]
fn a_plain_exported_program_is_refused_with_how_to_make_a_package() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("exported.pt2");
    std::fs::copy(aoti_fixture("plain_export.pt2"), &model).unwrap();
    let out = run_quick(&model, &[]);
    assert!(!out.status.success());
    let report = report_of(&model);
    assert_eq!(report["status"].as_str(), Some("failed"));
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("torch.export.save"), "{error}");
    assert!(error.contains("scripts/precisiond-export.py"), "{error}");
    assert!(error.contains("aoti_compile_and_package"), "{error}");
}

#[test]
fn a_package_without_input_metadata_asks_for_a_settings_file_and_then_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("bare.pt2");
    forge(
        &aoti_fixture("tiny_cnn.pt2"),
        &head,
        &[("precisiond.inputs", "")],
    );
    let out = run_quick(&head, &["--precisions", "fp32"]);
    assert!(!out.status.success());
    let error = report_of(&head)["error"].as_str().unwrap().to_owned();
    if !runs_avx2_packages() {
        assert!(error.contains("AVX2"), "{error}");
        return skip_part("the request for a settings file, and its use", NO_AVX2);
    }
    assert!(
        error.contains("bare.pt2.toml") && error.contains("[[inputs]]"),
        "{error}"
    );
    std::fs::write(
        dir.path().join("bare.pt2.toml"),
        "[[inputs]]\nshape = [1, 3, 16, 16]\n",
    )
    .unwrap();
    let out = run_quick(&head, &["--precisions", "fp32"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report_of(&head)["input_source"].as_str(), Some("settings"));
}

#[test]
fn a_family_linked_to_its_torchscript_model_sets_both_runtimes_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let head = copy_family(dir.path(), "tiny", &["bf16"]);
    std::fs::copy(aoti_fixture("tiny_cnn.pt"), dir.path().join("tiny.pt")).unwrap();
    std::fs::write(
        dir.path().join("tiny.pt2.toml"),
        "torchscript = \"tiny.pt\"\n",
    )
    .unwrap();
    let out = run_quick(&head, &["--precisions", "fp32,bf16"]);
    if !runs_avx2_packages() {
        assert!(!out.status.success());
        let error = report_of(&head)["error"].as_str().unwrap().to_owned();
        assert!(error.contains("AVX2"), "{error}");
        return skip_part("the side-by-side comparison", NO_AVX2);
    }
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("AOTInductor package vs TorchScript"),
        "{stdout}"
    );
    let report = report_of(&head);
    assert_eq!(
        report["model"]["torchscript"]["file"].as_str(),
        Some("tiny.pt")
    );
    let results = report["results"].as_array().unwrap();
    // The linked TorchScript model's BF16 is also measured under autocast.
    let torchscript: Vec<&toml::Value> = results
        .iter()
        .filter(|r| r.get("runtime").and_then(|v| v.as_str()) == Some("torchscript"))
        .filter(|r| r["method"].as_str() != Some("autocast"))
        .collect();
    assert_eq!(torchscript.len(), 2, "{results:#?}");
    for r in &torchscript {
        assert_eq!(r["status"].as_str(), Some("ok"), "{r:?}");
        assert_eq!(r["method"].as_str(), Some("cast"));
    }
    let rows = report["side_by_side"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for row in rows {
        let (a, t) = (
            row["aoti_median_ms"].as_float().unwrap(),
            row["torchscript_median_ms"].as_float().unwrap(),
        );
        let ratio = row["aoti_speedup_vs_torchscript"].as_float().unwrap();
        assert!((ratio - t / a).abs() < 1e-9 * ratio.max(1.0));
    }
    // The two files are one model: their FP32 outputs agree, and the
    // report says so.
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let agreement = notes
        .iter()
        .find(|n| n.contains("against the FP32 package"))
        .unwrap_or_else(|| panic!("{notes:?}"));
    assert!(
        agreement.contains("cosine 1.0000") || agreement.contains("cosine 0.9999"),
        "{agreement}"
    );
    assert!(!agreement.contains("do not look like the same model"));
}
