//! precisiond built for aarch64 and run under qemu-user (`make
//! test-aarch64`): the emulated CPU's features become the verdicts, a
//! fixture CNN is measured in every precision with INT8 through qnnpack,
//! the daemon works end to end, and an ARMv8.0 core that the PyPI libtorch
//! cannot run on gets a failed result that names the cause. Timings under
//! emulation mean nothing; only behaviour is checked.
//!
//! Ignored in `make test`: they need the aarch64 build, which `make
//! test-aarch64` makes and names in PRECISIOND_AARCH64_DIR.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn aarch64_dir() -> PathBuf {
    let dir = std::env::var_os("PRECISIOND_AARCH64_DIR")
        .map(PathBuf::from)
        .expect("PRECISIOND_AARCH64_DIR: run these with make test-aarch64");
    assert!(
        dir.join("precisiond").is_file() && dir.join("precisiond-worker").is_file(),
        "no aarch64 build in {}: make build-aarch64",
        dir.display()
    );
    dir
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `precisiond ARGS` for aarch64, under qemu emulating `cpu`.
fn emulated(cpu: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(root().join("scripts/aarch64-run.sh"));
    cmd.args(["--cpu", cpu])
        .arg(aarch64_dir().join("precisiond"))
        .args(args)
        .env_remove("PRECISIOND_WORKER");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The demo CNN measured by `command` (which gets the `run` arguments), with
/// `extra` arguments: what it printed and its report.
fn measure_demo(
    command: impl Fn(&[&str]) -> Command,
    extra: &[&str],
) -> (Output, Option<toml::Table>) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny_resnet.pt");
    std::fs::copy(root().join("examples/demo/tiny_resnet.pt"), &model).unwrap();
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        "--no-probe",
        "--threads",
        "2",
        "--max-seconds",
        "0.3",
        "--devices",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let out = command(&args).output().unwrap();
    let report = std::fs::read_to_string(dir.path().join("tiny_resnet.pt.report.toml"))
        .ok()
        .map(|t| t.parse().unwrap());
    (out, report)
}

fn detect(cpu: &str) -> toml::Table {
    let out = emulated(cpu, &["detect", "--format", "toml", "--no-probe"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{cpu}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .unwrap_or_else(|e| panic!("{cpu}: {e}\n{}", text(&out)))
}

fn native(hw: &toml::Table, precision: &str) -> bool {
    hw["cpu"][precision]["native"].as_bool().unwrap()
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn detect_follows_the_features_of_each_emulated_cpu() {
    // (qemu -cpu, FP16 arithmetic, BF16 arithmetic, INT8 dot product)
    let expected = [
        ("cortex-a72", false, false, false),
        ("cortex-a76", true, false, true),
        ("neoverse-n1", true, false, true),
        ("neoverse-n2", true, true, true),
    ];
    for (cpu, fp16, bf16, dot) in expected {
        let hw = detect(cpu);
        assert_eq!(hw["cpu"]["arch"].as_str(), Some("aarch64"), "{cpu}: {hw:?}");
        assert!(native(&hw, "fp32"), "{cpu}");
        assert_eq!(native(&hw, "fp16"), fp16, "{cpu}: {:?}", hw["cpu"]["fp16"]);
        assert_eq!(native(&hw, "bf16"), bf16, "{cpu}: {:?}", hw["cpu"]["bf16"]);
        // NEON runs INT8 natively on every ARMv8 core; the dot product is
        // a separate fact.
        assert!(native(&hw, "int8"), "{cpu}: {:?}", hw["cpu"]["int8"]);
        assert_eq!(
            hw["cpu"]["int8"]["dot_product"].as_bool(),
            Some(dot),
            "{cpu}: {:?}",
            hw["cpu"]["int8"]
        );
        let notes = hw["notes"].as_array().unwrap();
        assert!(
            notes
                .iter()
                .any(|n| n.as_str().unwrap().contains("EMULATED MACHINE")
                    && n.as_str().unwrap().contains(cpu)),
            "{cpu}: {notes:?}"
        );
    }
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn a_cnn_is_measured_in_every_precision_with_int8_through_qnnpack() {
    let (out, report) = measure_demo(|args| emulated("cortex-a76", args), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("EMULATED MACHINE"), "{stdout}");
    let report = report.unwrap();
    assert!(report["run"]["emulator"]
        .as_str()
        .unwrap()
        .contains("cortex-a76"));
    let results = report["results"].as_array().unwrap();
    let result = |p: &str| {
        results
            .iter()
            .find(|r| r["precision"].as_str() == Some(p))
            .unwrap_or_else(|| panic!("no {p} result"))
    };
    for p in ["fp32", "fp16", "bf16", "int8"] {
        assert_eq!(
            result(p)["status"].as_str(),
            Some("ok"),
            "{p}: {:?}",
            result(p)
        );
    }
    let int8 = result("int8");
    assert_eq!(int8["engine"].as_str(), Some("qnnpack"));
    assert_eq!(int8["method"].as_str(), Some("static-ptq"));
    // Synthetic calibration on the demo CNN: measured cosine 0.9996 on x86
    // with the x86 engine; qnnpack's ranges differ a little.
    let cosine = int8["accuracy"]["cosine"].as_float().unwrap();
    assert!(cosine > 0.99, "int8 cosine {cosine}");
    for p in ["fp16", "bf16"] {
        let cosine = result(p)["accuracy"]["cosine"].as_float().unwrap();
        assert!(cosine > 0.999, "{p} cosine {cosine}");
    }
    // No C++ backtrace makes it into a note.
    let notes = report["notes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    assert!(
        notes
            .iter()
            .all(|n| !n.as_str().unwrap().contains("frame #")),
        "{notes:?}"
    );
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn an_armv8_0_core_gets_a_failed_report_that_names_the_cause() {
    let (out, report) = measure_demo(
        |args| emulated("cortex-a72", args),
        &["--precisions", "fp32"],
    );
    let report = report.unwrap_or_else(|| panic!("no report: {}", text(&out)));
    assert_eq!(report["status"].as_str(), Some("failed"), "{}", text(&out));
    let error = report["error"].as_str().unwrap();
    for words in ["illegal instruction", "ARMv8.0", "atomics", "LIBTORCH"] {
        assert!(error.contains(words), "{words:?} missing from: {error}");
    }
    assert_eq!(report["run"]["libtorch"].as_str(), Some("2.13.0"));

    // `detect` with its probe stops the same way (measured: SIGILL in the
    // probe's kernels), and says the same.
    let out = emulated("cortex-a72", &["detect"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stderr.contains("illegal instruction") && stderr.contains("atomics"),
        "{}",
        text(&out)
    );
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn the_daemon_measures_a_dropped_model_under_emulation() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("drop");
    std::fs::create_dir(&drop).unwrap();
    let config = dir.path().join("precisiond.toml");
    std::fs::write(
        &config,
        "precisions = [\"fp32\", \"int8\"]\nmax_seconds = 0.3\nsettle_ms = 300\nprobe = false\n",
    )
    .unwrap();
    let daemon = emulated(
        "neoverse-n1",
        &[
            "watch",
            drop.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Give the emulated daemon its start (libtorch is not loaded by it).
    std::thread::sleep(Duration::from_secs(3));
    let model = drop.join("mlp.pt");
    std::fs::copy(root().join("tests/fixtures/models/mlp.pt"), &model).unwrap();
    let report = drop.join("mlp.pt.report.toml");
    let started = Instant::now();
    while !report.exists() && started.elapsed() < Duration::from_secs(240) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let out = daemon.wait_with_output().unwrap();
    let text: toml::Table = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)))
        .parse()
        .unwrap();
    assert_eq!(text["status"].as_str(), Some("ok"), "{text:?}");
    let results = text["results"].as_array().unwrap();
    // The MLP is all linear layers: INT8 by dynamic PTQ beside static PTQ.
    let made: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["precision"].as_str().unwrap(),
                r["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        made,
        [
            ("fp32", "cast"),
            ("int8", "static-ptq"),
            ("int8", "dynamic-ptq")
        ],
        "{results:?}"
    );
    assert!(
        results.iter().all(|r| r["status"].as_str() == Some("ok")),
        "{results:?}"
    );
    assert!(text["run"]["emulator"]
        .as_str()
        .unwrap()
        .contains("neoverse-n1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ARMv8.0 worker (Debian's libtorch 2.6, `make build-aarch64-armv8.0`)
/// under the aarch64 supervisor, with Debian 13's runtime as qemu's sysroot.
fn armv8_0(cpu: &str, args: &[&str]) -> Command {
    let worker = std::env::var_os("PRECISIOND_ARMV8_0_WORKER")
        .expect("PRECISIOND_ARMV8_0_WORKER: run these with make test-aarch64");
    let sysroot = std::env::var_os("PRECISIOND_ARMV8_0_SYSROOT")
        .expect("PRECISIOND_ARMV8_0_SYSROOT: run these with make test-aarch64");
    let mut cmd = emulated(cpu, args);
    cmd.env("PRECISIOND_WORKER", worker)
        .env("AARCH64_SYSROOT", sysroot);
    cmd
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn armv8_0_cores_run_with_debians_libtorch() {
    // The probe runs too: this libtorch runs on these cores.
    for cpu in ["cortex-a53", "cortex-a72"] {
        let out = armv8_0(cpu, &["detect", "--format", "toml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cpu}: {}", text(&out));
        let hw: toml::Table = String::from_utf8_lossy(&out.stdout).parse().unwrap();
        assert!(
            !native(&hw, "fp16") && !native(&hw, "bf16"),
            "{cpu}: {hw:?}"
        );
        assert!(native(&hw, "int8"), "{cpu}");
        assert_eq!(hw["cpu"]["int8"]["dot_product"].as_bool(), Some(false));
        let engines = hw["cpu"]["quantized_engines"].as_array().unwrap();
        assert!(
            engines.iter().any(|e| e.as_str() == Some("onednn")),
            "{engines:?}"
        );
    }

    let (out, report) = measure_demo(|args| armv8_0("cortex-a72", args), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let report = report.unwrap();
    assert_eq!(report["run"]["libtorch"].as_str(), Some("2.6.0"));
    let results = report["results"].as_array().unwrap();
    for r in results {
        assert_eq!(r["status"].as_str(), Some("ok"), "{r:?}");
    }
    let int8 = results
        .iter()
        .find(|r| r["precision"].as_str() == Some("int8"))
        .unwrap();
    assert_eq!(int8["engine"].as_str(), Some("onednn"));
    let cosine = int8["accuracy"]["cosine"].as_float().unwrap();
    assert!(cosine > 0.99, "int8 cosine {cosine}");
}

#[test]
#[ignore = "needs the aarch64 build and qemu: make test-aarch64"]
fn an_x86_aoti_package_is_refused_on_arm_before_it_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("tiny.pt2");
    std::fs::copy(root().join("tests/fixtures/aoti/tiny_cnn.pt2"), &head).unwrap();
    let out = emulated(
        "cortex-a76",
        &[
            "run",
            head.to_str().unwrap(),
            "--no-probe",
            "--devices",
            "cpu",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let report: toml::Table = std::fs::read_to_string(dir.path().join("tiny.pt2.report.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let error = report["error"].as_str().unwrap();
    for words in ["x86_64", "AVX2", "aarch64", "none was measured"] {
        assert!(error.contains(words), "{words:?} missing from: {error}");
    }
}
