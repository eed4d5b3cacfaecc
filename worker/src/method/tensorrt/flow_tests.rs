//! The TensorRT flow without a GPU: find trtexec, read its version, build,
//! cache, time and summarise, against a stand-in script that replays
//! trtexec's recorded output (tests/fixtures/tensorrt/, see its README).

use super::run::{measure, Request};
use precisiond_core::bench::LatencyStats;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use precisiond_core::tensorrt::{self, TrtVersion, Trtexec};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tensorrt")
        .join(name)
}

fn expected_samples(name: &str) -> Vec<f64> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// A folder with `trtexec` (the stand-in, replaying `banner` and `times`)
/// and the log of its invocations.
struct StandIn {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl StandIn {
    fn new(banner: &str, times: &str, fail_build: bool) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("invocations.log");
        let exe = dir.path().join("trtexec");
        let script = format!(
            "#!/bin/sh\nSTANDIN_BANNER='{}' STANDIN_TIMES='{}' STANDIN_LOG='{}' STANDIN_FAIL_BUILD={} exec sh '{}' \"$@\"\n",
            fixture(banner).display(),
            fixture(times).display(),
            log.display(),
            u8::from(fail_build),
            fixture("trtexec-standin.sh").display()
        );
        std::fs::write(&exe, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { dir, log }
    }

    /// PATH with the stand-in first.
    fn path_var(&self) -> OsString {
        let mut dirs = vec![self.dir.path().to_path_buf()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap()
    }

    fn invocations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn request<'a>(
    trt: &'a Trtexec,
    onnx: &'a Path,
    state: &'a Path,
    precision: Precision,
) -> Request<'a> {
    Request {
        trtexec: trt,
        onnx,
        precision,
        device_index: 0,
        gpu: "NVIDIA Orin (8.7)".into(),
        state_dir: state,
        calibration_cache: None,
        calibration_samples: None,
        max_seconds: 1.0,
        batch: 1,
        build_timeout: Duration::from_secs(60),
    }
}

#[test]
fn int8_flow_builds_once_caches_and_reads_the_exported_times() {
    let standin = StandIn::new("trtexec_help_trt10.8.txt", "export_times_trt10.json", false);
    let trt = tensorrt::find(None, Some(&standin.path_var())).unwrap();
    assert_eq!(trt.version, TrtVersion::new(10, 8, 0));
    assert_eq!(trt.path, standin.dir.path().join("trtexec"));

    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("mlp.onnx");
    std::fs::write(&onnx, b"\x08\x07 recorded-free ONNX stand-in: Gemm Relu").unwrap();
    let state = work.path().join(".precisiond");

    let r: PrecisionResult = measure(&request(&trt, &onnx, &state, Precision::Int8));
    assert_eq!(r.status, Status::Ok, "{}", r.reason);
    assert_eq!(r.method, Method::Tensorrt);
    assert_eq!(r.device, precisiond_core::devices::Device::Cuda(0));
    assert_eq!(r.tensorrt_version.as_deref(), Some("10.8.0"));
    assert_eq!(r.engine_cached, Some(false));
    assert!(r.engine_build_seconds.unwrap() >= 0.0);
    let expected =
        LatencyStats::from_samples(&expected_samples("export_times_trt10.expected")).unwrap();
    assert_eq!(r.latency_ms.as_ref(), Some(&expected));
    assert!(r.timing.as_deref().unwrap().contains("exportTimes"));
    let engine = PathBuf::from(r.engine_file.clone().unwrap());
    assert!(engine.is_file() && engine.starts_with(state.join("tensorrt")));
    // Placeholder ranges, said plainly.
    let calibration = r.calibration.as_ref().unwrap();
    assert!(
        calibration.source.contains("placeholder"),
        "{calibration:?}"
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("PLACEHOLDER RANGES") && n.contains("accuracy is not")),
        "{:?}",
        r.notes
    );
    let accuracy = r.accuracy.as_ref().unwrap();
    assert!(accuracy.worst.cosine.is_none() && accuracy.worst.why_absent.contains_key("cosine"));
    // Nothing but the engine, its facts and the logs stays behind.
    for entry in std::fs::read_dir(state.join("tensorrt")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".engine") || name.ends_with(".engine.toml") || name.ends_with(".log"),
            "{name}"
        );
    }

    let calls = standin.invocations();
    assert_eq!(calls.len(), 3, "--help, build, timing: {calls:?}");
    assert_eq!(calls[0], "--help");
    assert!(
        calls[1].starts_with(&format!("--onnx={} --int8 --saveEngine=", onnx.display())),
        "{}",
        calls[1]
    );
    assert!(
        calls[1].ends_with("--device=0 --skipInference"),
        "{}",
        calls[1]
    );
    assert!(
        calls[2].starts_with(&format!("--loadEngine={} --exportTimes=", engine.display())),
        "{}",
        calls[2]
    );

    // Again: the engine comes from the cache, only the timing runs.
    let again = measure(&request(&trt, &onnx, &state, Precision::Int8));
    assert_eq!(again.status, Status::Ok, "{}", again.reason);
    assert_eq!(again.engine_cached, Some(true));
    assert_eq!(again.engine_build_seconds, r.engine_build_seconds);
    let calls = standin.invocations();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[3].starts_with("--loadEngine="));

    // A calibration cache is a different engine.
    let cache = work.path().join("mlp.cache");
    std::fs::write(&cache, "TRT-100800-EntropyCalibration2\ninput: 3c010a14\n").unwrap();
    let mut with_cache = request(&trt, &onnx, &state, Precision::Int8);
    with_cache.calibration_cache = Some(&cache);
    let c = measure(&with_cache);
    assert_eq!(c.status, Status::Ok, "{}", c.reason);
    assert_eq!(c.engine_cached, Some(false));
    assert_ne!(c.engine_file, r.engine_file);
    assert!(c.calibration.as_ref().unwrap().source.contains("mlp.cache"));
    assert!(standin.invocations()[4].contains(&format!("--calib={}", cache.display())));
}

#[test]
fn a_failed_build_is_a_failed_result_with_trtexecs_error_and_no_engine() {
    let standin = StandIn::new("trtexec_help_trt10.8.txt", "export_times_trt10.json", true);
    let trt = tensorrt::find(None, Some(&standin.path_var())).unwrap();
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("m.onnx");
    std::fs::write(&onnx, b"onnx").unwrap();
    let state = work.path().join("state");
    let r = measure(&request(&trt, &onnx, &state, Precision::Fp16));
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.reason.contains("Network must have at least one output"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("build.log"), "{}", r.reason);
    assert!(r.latency_ms.is_none());
    for entry in std::fs::read_dir(state.join("tensorrt")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".log"),
            "no engine or partial engine left: {name}"
        );
    }
}

#[test]
fn precisions_a_version_lacks_are_unsupported_without_running_a_build() {
    let standin = StandIn::new(
        "trtexec_help_trt8.6.1.txt",
        "export_times_trt10.json",
        false,
    );
    let trt = tensorrt::find(None, Some(&standin.path_var())).unwrap();
    let work = tempfile::tempdir().unwrap();
    let onnx = work.path().join("m.onnx");
    std::fs::write(&onnx, b"onnx").unwrap();
    let r = measure(&request(&trt, &onnx, work.path(), Precision::Bf16));
    assert_eq!(r.status, Status::Unsupported);
    assert!(
        r.reason.contains("8.6.1") && r.reason.contains("--bf16"),
        "{}",
        r.reason
    );
    assert_eq!(standin.invocations(), ["--help"]);

    // TensorRT 11 without Q/DQ nodes: no INT8 at all.
    let standin = StandIn::new("trtexec_help_trt11.1.txt", "export_times_trt10.json", false);
    let trt = tensorrt::find(None, Some(&standin.path_var())).unwrap();
    let r = measure(&request(&trt, &onnx, work.path(), Precision::Int8));
    assert_eq!(r.status, Status::Unsupported);
    assert!(r.reason.contains("strongly typed"), "{}", r.reason);
    assert_eq!(standin.invocations(), ["--help"]);
}

#[test]
fn a_trtexec_that_prints_no_version_is_explained() {
    let standin = StandIn::new("trtexec_help_trt7.1.txt", "export_times_trt10.json", false);
    let e = tensorrt::find(None, Some(&standin.path_var())).unwrap_err();
    assert!(
        matches!(e, tensorrt::TrtexecError::NoVersion { .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("cannot tell the TensorRT version") && e.contains("8.0"),
        "{e}"
    );
}
