//! TensorRT through trtexec, without a GPU: parsing trtexec's recorded
//! output formats (tests/fixtures/tensorrt/, see its README for where the
//! formats come from), command lines, engine cache keys. The whole flow
//! (find trtexec, read its version, build, cache, time, summarise) against
//! a trtexec stand-in script is tested where it runs, in the worker
//! (worker/src/method/tensorrt/flow_tests.rs).

use precisiond_core::bench::LatencyStats;
use precisiond_core::precision::Precision;
use precisiond_core::settings::SettingsDir;
use precisiond_core::tensorrt::{self, EngineKey, TrtVersion};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tensorrt")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn expected_samples(name: &str) -> Vec<f64> {
    read(name)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn versions_come_from_the_recorded_banners() {
    for (file, version) in [
        ("trtexec_help_trt10.8.txt", TrtVersion::new(10, 8, 0)),
        ("trtexec_help_trt11.1.txt", TrtVersion::new(11, 1, 0)),
        ("trtexec_help_trt8.6.1.txt", TrtVersion::new(8, 6, 1)),
        ("trtexec_help_trt8.4.1.txt", TrtVersion::new(8, 4, 1)),
        ("trtexec_run_trt10.3.txt", TrtVersion::new(10, 3, 0)),
    ] {
        assert_eq!(
            tensorrt::parse_version(&read(file)),
            Some(version),
            "{file}"
        );
    }
    // Before 8.0 trtexec printed no version.
    assert_eq!(
        tensorrt::parse_version(&read("trtexec_help_trt7.1.txt")),
        None
    );
    // The run log's "TensorRT version:" line alone is enough.
    let without_banner: String = read("trtexec_run_trt10.3.txt")
        .lines()
        .filter(|l| !l.starts_with("&&&&"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        tensorrt::parse_version(&without_banner),
        Some(TrtVersion::new(10, 3, 0))
    );
}

#[test]
fn export_times_of_current_versions_are_read_entry_by_entry() {
    let entries = tensorrt::parse_export_times(&read("export_times_trt10.json")).unwrap();
    assert_eq!(entries.len(), 24);
    for key in [
        "startEnqMs",
        "endEnqMs",
        "startH2dMs",
        "endH2dMs",
        "startComputeMs",
        "endComputeMs",
        "startD2hMs",
        "endD2hMs",
        "h2dMs",
        "computeMs",
        "d2hMs",
        "latencyMs",
    ] {
        assert!(entries[0].contains_key(key), "{key}");
    }
    let samples = tensorrt::samples_ms(&entries, TrtVersion::new(10, 8, 0), 200.0).unwrap();
    assert_eq!(samples, expected_samples("export_times_trt10.expected"));
    let stats = LatencyStats::from_samples(&samples).unwrap();
    assert_eq!(stats.iterations, 24);
    assert_eq!(stats.max, 1.4821, "the slow inference is kept");
}

#[test]
fn export_times_before_8_5_1_drop_the_warm_up_like_trtexec_does() {
    let entries = tensorrt::parse_export_times(&read("export_times_trt8.2.json")).unwrap();
    assert_eq!(entries.len(), 16);
    assert!(entries[0].contains_key("endToEndMs"));
    let samples = tensorrt::samples_ms(&entries, TrtVersion::new(8, 2, 1), 200.0).unwrap();
    assert_eq!(samples, expected_samples("export_times_trt8.2.expected"));
    // A current version takes the trace as it is.
    let all = tensorrt::samples_ms(&entries, TrtVersion::new(8, 5, 1), 200.0).unwrap();
    assert_eq!(all.len(), 16);
}

#[test]
fn build_and_timing_command_lines_follow_the_version() {
    let onnx = Path::new("/d/m.onnx");
    let engine = Path::new("/d/.precisiond/tensorrt/m.engine");
    let v10 = TrtVersion::new(10, 8, 0);
    let plan = tensorrt::plan(v10, Precision::Int8, false, None).unwrap();
    assert_eq!(plan.flags, ["--int8"]);
    assert_eq!(plan.calibration, Some(tensorrt::Calibration::Placeholder));
    assert_eq!(
        tensorrt::build_args(v10, onnx, engine, &plan.flags, 1),
        [
            "--onnx=/d/m.onnx",
            "--int8",
            "--saveEngine=/d/.precisiond/tensorrt/m.engine",
            "--device=1",
            "--skipInference"
        ]
    );
    let v84 = TrtVersion::new(8, 4, 1);
    assert_eq!(
        tensorrt::build_args(v84, onnx, engine, &["--fp16".into()], 0)
            .last()
            .unwrap(),
        "--buildOnly"
    );
    assert_eq!(
        tensorrt::timing_args(v10, engine, Path::new("/t/times.json"), 0, 1000, 3),
        [
            "--loadEngine=/d/.precisiond/tensorrt/m.engine",
            "--exportTimes=/t/times.json",
            "--device=0",
            "--warmUp=1000",
            "--duration=3",
            "--noDataTransfers"
        ]
    );
    // 11: transfers are off by default and the flag is deprecated.
    let v11 = TrtVersion::new(11, 1, 0);
    assert!(
        !tensorrt::timing_args(v11, engine, Path::new("t"), 0, 200, 1)
            .contains(&"--noDataTransfers".into())
    );

    // Calibration: a cache when given, none with Q/DQ nodes.
    let cache = Path::new("/d/m.cache");
    let with_cache = tensorrt::plan(v10, Precision::Int8, false, Some(cache)).unwrap();
    assert_eq!(with_cache.flags, ["--int8", "--calib=/d/m.cache"]);
    let qdq = tensorrt::plan(v10, Precision::Int8, true, Some(cache)).unwrap();
    assert_eq!(qdq.flags, ["--int8"]);
    assert_eq!(qdq.calibration, Some(tensorrt::Calibration::ExplicitQdq));

    // BF16 only where trtexec has --bf16.
    assert_eq!(
        tensorrt::plan(v10, Precision::Bf16, false, None)
            .unwrap()
            .flags,
        ["--bf16"]
    );
    let e = tensorrt::plan(TrtVersion::new(8, 6, 1), Precision::Bf16, false, None).unwrap_err();
    assert_eq!(e, tensorrt::Unbuildable::NoBf16(TrtVersion::new(8, 6, 1)));
    let e = e.to_string();
    assert!(e.contains("10.0"), "{e}");
    assert_eq!(
        tensorrt::plan(v84, Precision::Fp16, false, None)
            .unwrap()
            .flags,
        ["--fp16"]
    );

    // TensorRT 11 is strongly typed only.
    let e = tensorrt::plan(v11, Precision::Int8, false, None).unwrap_err();
    assert_eq!(e, tensorrt::Unbuildable::Int8WithoutQdq(v11));
    let e = e.to_string();
    assert_eq!(
        e,
        "TensorRT 11.1.0 builds strongly typed networks only: trtexec has no --int8 flag, the \
         ONNX file's own types decide the precision; INT8 needs an ONNX file with \
         QuantizeLinear/DequantizeLinear nodes (for example from NVIDIA's Model Optimizer), and \
         this one has none"
    );
    assert!(
        e.contains("strongly typed") && e.contains("QuantizeLinear"),
        "{e}"
    );
    assert!(tensorrt::plan(v11, Precision::Int8, true, None)
        .unwrap()
        .flags
        .is_empty());
    assert!(tensorrt::plan(v11, Precision::Fp16, false, None).is_err());
}

#[test]
fn trtexec_gets_its_paths_byte_for_byte() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let path = |bytes: &[u8]| PathBuf::from(OsStr::from_bytes(bytes));
    let v10 = TrtVersion::new(10, 8, 0);
    let cache = path(b"/d/m\xfe.cache");
    let plan = tensorrt::plan(v10, Precision::Int8, false, Some(&cache)).unwrap();
    let onnx = path(b"/d/m\xff.onnx");
    let engine = path(b"/d/.precisiond/tensorrt/m\xff.engine");
    let build = tensorrt::build_args(v10, &onnx, &engine, &plan.flags, 0);
    let bytes: Vec<&[u8]> = build.iter().map(|a| a.as_bytes()).collect();
    assert_eq!(bytes[0], b"--onnx=/d/m\xff.onnx");
    assert_eq!(bytes[2], b"--calib=/d/m\xfe.cache");
    assert_eq!(
        bytes[3],
        b"--saveEngine=/d/.precisiond/tensorrt/m\xff.engine"
    );
    let times = path(b"/t/\xfftimes.json");
    let timing = tensorrt::timing_args(v10, &engine, &times, 0, 200, 1);
    assert_eq!(
        timing[0].as_bytes(),
        b"--loadEngine=/d/.precisiond/tensorrt/m\xff.engine"
    );
    assert_eq!(timing[1].as_bytes(), b"--exportTimes=/t/\xfftimes.json");
}

#[test]
fn engine_cache_keys_change_with_everything_that_changes_the_engine() {
    let flags = vec![OsString::from("--int8")];
    let base = EngineKey {
        onnx_sha256: "aa11",
        version: TrtVersion::new(10, 3, 0),
        flags: &flags,
        calibration_sha256: None,
        gpu: "Orin (8.7)",
    };
    let fp16 = vec![OsString::from("--fp16")];
    let variants = [
        EngineKey {
            onnx_sha256: "bb22",
            ..base.clone()
        },
        EngineKey {
            version: TrtVersion::new(10, 4, 0),
            ..base.clone()
        },
        EngineKey {
            flags: &fp16,
            ..base.clone()
        },
        EngineKey {
            calibration_sha256: Some("cc33"),
            ..base.clone()
        },
        EngineKey {
            gpu: "RTX 4090 (8.9)",
            ..base.clone()
        },
    ];
    for v in &variants {
        assert_ne!(v.hash(), base.hash(), "{v:?}");
    }
    assert_eq!(base.hash(), base.clone().hash(), "stable");
    // A calibration cache counts by content, not by where it lies.
    let a: Vec<OsString> = vec!["--int8".into(), "--calib=/a/x.cache".into()];
    let b: Vec<OsString> = vec!["--int8".into(), "--calib=/b/y.cache".into()];
    let key = |flags| EngineKey {
        flags,
        calibration_sha256: Some("cc33"),
        ..base.clone()
    };
    assert_eq!(key(&a).hash(), key(&b).hash());
    let path = base.engine_path(Path::new("/s/tensorrt"), "resnet", Precision::Int8);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("resnet.aa11.trt10.3.0.int8."), "{name}");
    assert!(name.ends_with(".engine"), "{name}");
}

#[test]
fn trtexec_is_found_where_configured_then_on_path_then_in_jetpacks_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |sub: &str| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let exe = d.join("trtexec");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    };
    let on_path = mk("bin");
    let jetpack = mk("usr-src-tensorrt-bin");
    let configured = mk("opt");
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("trtexec"), "not executable").unwrap();
    let path_var =
        std::env::join_paths([plain.clone(), on_path.parent().unwrap().to_path_buf()]).unwrap();
    let fallback = vec![jetpack.parent().unwrap().to_path_buf()];

    let found = |c: Option<&Path>, p: Option<&OsString>| {
        tensorrt::locate_in(c, p.map(|p| p.as_os_str()), &fallback)
    };
    assert_eq!(
        found(Some(&configured), Some(&path_var)).unwrap(),
        configured
    );
    assert_eq!(
        found(None, Some(&path_var)).unwrap(),
        on_path,
        "PATH, skipping a non-executable file"
    );
    assert_eq!(found(None, None).unwrap(), jetpack);
    let e = tensorrt::locate_in(None, None, &[]).unwrap_err();
    assert!(
        matches!(e, tensorrt::TrtexecError::NotFound { .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.starts_with(tensorrt::NOT_FOUND_REASON), "{e}");
    assert!(
        e.contains("PyTorch's quantized operators are CPU-only"),
        "{e}"
    );
    let e = found(Some(&plain.join("trtexec")), None).unwrap_err();
    assert!(
        matches!(e, tensorrt::TrtexecError::NotExecutable(_)),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("not an executable"), "{e}");
}

#[test]
fn the_onnx_file_is_beside_the_model_or_named_in_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("net.pt");
    let settings = SettingsDir::of(&dir.path().join("net.pt.toml"), false);
    assert_eq!(tensorrt::onnx_for(&model, None, &settings).unwrap(), None);
    std::fs::write(dir.path().join("net.onnx"), b"x").unwrap();
    assert_eq!(
        tensorrt::onnx_for(&model, None, &settings).unwrap(),
        Some(dir.path().join("net.onnx"))
    );
    std::fs::create_dir(dir.path().join("onnx")).unwrap();
    std::fs::write(dir.path().join("onnx/other.onnx"), b"x").unwrap();
    assert_eq!(
        tensorrt::onnx_for(&model, Some(Path::new("onnx/other.onnx")), &settings).unwrap(),
        Some(dir.path().join("onnx/other.onnx"))
    );
    let e = tensorrt::onnx_for(&model, Some(Path::new("missing.onnx")), &settings).unwrap_err();
    assert!(matches!(e, tensorrt::OnnxError::Missing { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("missing.onnx") && e.contains("does not exist"),
        "{e}"
    );
}
