//! Devices end to end with the real binaries: what a run does where there is
//! no CUDA device (this build machine), and how the binaries are linked.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn results(report: &toml::Table) -> Vec<toml::Table> {
    report["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| r.as_table().unwrap().clone())
        .collect()
}

fn notes(table: &toml::Table) -> Vec<String> {
    table
        .get("notes")
        .and_then(|n| n.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// How many CUDA devices the worker sees, through libtorch: `detect` lists
/// a [cudaN] table for each.
fn cuda_devices() -> usize {
    let out = worker()
        .args(["detect", "--no-probe", "--format", "toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (0..)
        .take_while(|n| stdout.contains(&format!("[cuda{n}]")))
        .count()
}

fn cuda_available() -> bool {
    cuda_devices() > 0
}

/// Why a test of what happens without a GPU checked nothing here.
const HAS_GPU: &str =
    "this machine has a CUDA device: what happens without one is not seen here (benches/gpu/run.sh covers the GPU)";

/// A folder whose `trtexec` logs every call, to show it is never run
/// without a GPU.
fn logging_trtexec(dir: &Path) -> (std::ffi::OsString, std::path::PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("trtexec.log");
    let exe = bin.join("trtexec");
    std::fs::write(
        &exe,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\necho '&&&& RUNNING TensorRT.trtexec [TensorRT v100800] [b43] # trtexec'\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    (std::env::join_paths(dirs).unwrap(), log)
}

#[test]
fn auto_without_a_gpu_measures_the_cpu_alone_and_says_why() {
    if cuda_available() {
        return skip(HAS_GPU);
    }
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    // TensorRT "present" and an ONNX file beside the model: still nothing
    // runs on a GPU that is not there.
    std::fs::write(dir.path().join("mlp.onnx"), b"onnx").unwrap();
    let (path_var, trtexec_log) = logging_trtexec(dir.path());
    let out = precisiond()
        .args(["run"])
        .arg(&model)
        .args(["--no-probe", "--threads", "2", "--max-seconds", "0.3"])
        .args(["--devices", "auto", "--precisions", "fp32,fp16,bf16,int8"])
        .env("PATH", &path_var)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = report_of(&model);
    assert_eq!(report["status"].as_str(), Some("ok"));
    let rs = results(&report);
    // FP32; FP16 and BF16 cast and under autocast; INT8 by static and
    // dynamic PTQ (the MLP's compute is in linear layers).
    assert_eq!(rs.len(), 7, "{rs:?}");
    for r in &rs {
        assert_eq!(r["device"].as_str(), Some("cpu"), "{r:?}");
        assert_eq!(r["status"].as_str(), Some("ok"), "{r:?}");
        let rss = r["peak_host_rss_bytes"]
            .as_integer()
            .expect("peak_host_rss_bytes");
        assert!(
            rss > 10_000_000,
            "a worker with libtorch uses more than 10 MB: {rss}"
        );
        assert!(!r.contains_key("peak_device_memory_bytes"));
    }
    let report_notes = notes(&report);
    assert!(
        report_notes
            .iter()
            .any(|n| n.contains("no CUDA device") && n.contains("no CUDA results")),
        "{report_notes:?}"
    );
    assert!(!trtexec_log.exists(), "trtexec ran without a GPU");
    assert!(!dir.path().join(".precisiond/tensorrt").exists());
}

#[test]
fn a_cuda_device_asked_for_by_name_is_unsupported_not_failed_without_a_gpu() {
    if cuda_available() {
        return skip(HAS_GPU);
    }
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    let out = run_quick(
        &model,
        &["--devices", "cpu,cuda:0", "--precisions", "fp32,int8"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cuda:0"), "{stdout}");
    let report = report_of(&model);
    assert_eq!(report["status"].as_str(), Some("ok"));
    let rs = results(&report);
    // The CPU's FP32 and INT8 (static and dynamic PTQ), cuda:0's two.
    assert_eq!(rs.len(), 5);
    let cuda: Vec<&toml::Table> = rs
        .iter()
        .filter(|r| r["device"].as_str() == Some("cuda:0"))
        .collect();
    assert_eq!(cuda.len(), 2);
    for r in &cuda {
        assert_eq!(r["status"].as_str(), Some("unsupported"), "{r:?}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("cuda:0 was asked for") && reason.contains("no CUDA device"),
            "{reason}"
        );
        assert!(
            !r.contains_key("latency_ms"),
            "never a timing under a CUDA label: {r:?}"
        );
    }
    let int8 = cuda
        .iter()
        .find(|r| r["precision"].as_str() == Some("int8"))
        .unwrap();
    assert_eq!(int8["method"].as_str(), Some("tensorrt"));
    // The CPU is measured as ever.
    let cpu_int8 = rs
        .iter()
        .find(|r| r["device"].as_str() == Some("cpu") && r["precision"].as_str() == Some("int8"))
        .unwrap();
    assert_eq!(cpu_int8["status"].as_str(), Some("ok"));
    assert_eq!(cpu_int8["method"].as_str(), Some("static-ptq"));
}

#[test]
fn the_settings_file_chooses_the_devices_and_the_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    std::fs::write(
        dir.path().join("mlp.pt.toml"),
        "devices = [\"cuda:1\"]\nprecisions = [\"fp32\"]\n",
    )
    .unwrap();
    let out = precisiond()
        .arg("run")
        .arg(&model)
        .args(["--no-probe", "--threads", "2", "--max-seconds", "0.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rs = results(&report_of(&model));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["device"].as_str(), Some("cuda:1"));
    // cuda:1 is the second GPU: measured where there are two.
    let expected = if cuda_devices() > 1 {
        "ok"
    } else {
        "unsupported"
    };
    assert_eq!(rs[0]["status"].as_str(), Some(expected), "{:?}", rs[0]);
    let out = run_quick(&model, &["--devices", "cpu"]);
    assert!(out.status.success(), "{}", text(&out));
    let rs = results(&report_of(&model));
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["device"].as_str(), Some("cpu"));
    assert_eq!(rs[0]["status"].as_str(), Some("ok"));
}

#[test]
fn a_bad_device_name_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    let out = run_quick(&model, &["--devices", "tpu:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tpu") && stderr.contains("cuda:N"),
        "{stderr}"
    );
    assert!(!dir.path().join("mlp.pt.report.toml").exists());
}

#[test]
fn detect_says_when_there_is_no_cuda_device() {
    let out = precisiond()
        .args(["detect", "--no-probe"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.contains("no CUDA device found"),
        !cuda_available(),
        "{stdout}"
    );
}

fn needed(binary: &str) -> String {
    let out = Command::new("readelf")
        .args(["-d", binary])
        .output()
        .expect("readelf (binutils) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn build_info() -> precisiond_core::protocol::WorkerBuild {
    let build = worker().arg("build-info").output().unwrap();
    assert!(build.status.success(), "{}", text(&build));
    toml::from_str(&String::from_utf8_lossy(&build.stdout)).unwrap()
}

#[test]
fn the_worker_links_only_libtorch_cpu_and_the_supervisor_no_libtorch() {
    let linked = needed(&worker_exe().display().to_string());
    assert!(linked.contains("libtorch_cpu.so"), "{linked}");
    // libtorch_cuda is loaded at run time, where there is a GPU.
    assert!(!linked.contains("libtorch_cuda"), "{linked}");
    let libtorch = std::env::var_os("LIBTORCH").map(PathBuf::from);
    if let Some(lib) = libtorch.filter(|l| l.join("lib/libtorch_cuda.so").exists()) {
        assert!(build_info().libtorch_cuda, "{lib:?}");
    }
    let supervisor = needed(env!("CARGO_BIN_EXE_precisiond"));
    assert!(!supervisor.is_empty());
    assert!(
        !supervisor.contains("libtorch") && !supervisor.contains("libc10"),
        "{supervisor}"
    );
}

/// The shared libraries a running worker has mapped, read while it measures
/// `model`, with `env` set.
fn worker_maps_while_measuring(env: &[(&str, &str)]) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("mlp.pt", dir.path());
    let mut child = worker()
        .args([
            "run",
            model.to_str().unwrap(),
            "--no-probe",
            "--devices",
            "cpu",
        ])
        // A budget it cannot end early (the confidence target is out of
        // reach): the worker is still running when its maps are read.
        .args(["--precisions", "fp32", "--max-seconds", "30"])
        .args(["--target-ci-percent", "0.000001"])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // Once it measures, everything it will load is loaded.
    let step = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.starts_with("PROGRESS")))
        .expect("a progress line")
        .unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let report =
        std::fs::read_to_string(format!("{}.report.toml", model.display())).unwrap_or_default();
    (format!("{step}\n{maps}"), report)
}

#[test]
fn without_a_gpu_the_worker_maps_no_cuda_library_beyond_libtorch_cpus_runtime() {
    if cuda_available() {
        // The other side: with a GPU, libtorch_cuda is loaded, as it must be.
        let (maps, _) = worker_maps_while_measuring(&[]);
        assert!(maps.contains("libtorch_cuda.so"), "{maps}");
        return skip_part("the CUDA libraries left unmapped", HAS_GPU);
    }
    let (maps, _) = worker_maps_while_measuring(&[]);
    assert!(maps.contains("libtorch_cpu.so"), "{maps}");
    for large in [
        "libtorch_cuda",
        "libcublas",
        "libcudnn",
        "libnccl",
        "libcusparse",
        "libcufft",
        "libcurand",
        "libcusolver",
        "libnvshmem",
    ] {
        assert!(!maps.contains(large), "{large} is mapped:\n{maps}");
    }
}

#[test]
fn libtorch_cuda_loaded_at_run_time_registers_cuda_and_detect_says_so() {
    if !build_info().libtorch_cuda {
        return skip(
            "this libtorch has no libtorch_cuda.so (a CPU-only build): nothing to load; \
             PRECISIOND_CUDA=1 scripts/install-libtorch.sh installs the CUDA one",
        );
    }
    // Forced without a GPU: the loading itself (found through the rpath,
    // RTLD_GLOBAL) is what a GPU machine does before its first CUDA call.
    let (maps, _) = worker_maps_while_measuring(&[("PRECISIOND_LOAD_LIBTORCH_CUDA", "1")]);
    assert!(maps.contains("libtorch_cuda.so"), "{maps}");
    let out = worker()
        .args(["detect", "--no-probe", "--format", "toml"])
        .env("PRECISIOND_LOAD_LIBTORCH_CUDA", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("libtorch_cuda.so loaded"), "{stdout}");
    // And without: detect names what is loaded and why libtorch_cuda is not.
    let out = worker()
        .args(["detect", "--no-probe", "--format", "toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if cuda_available() {
        assert!(stdout.contains("libtorch_cuda.so loaded"), "{stdout}");
    } else {
        assert!(
            stdout.contains("libtorch libraries loaded: libc10.so, libtorch_cpu.so")
                && stdout.contains("libtorch_cuda.so not loaded"),
            "{stdout}"
        );
    }
}

#[test]
fn the_worker_still_starts_quickly_without_a_gpu() {
    // A limit of 20 s only catches a hang (a driver probe waiting on a
    // missing device, say) on this shared 2-core machine; the start-up time
    // itself is measured in benches/detect.sh.
    let started = std::time::Instant::now();
    let out = worker()
        .args(["detect", "--no-probe"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("precisiond-worker detect --no-probe took {elapsed:?}");
    assert!(elapsed.as_secs_f64() < 20.0, "{elapsed:?}");
}
