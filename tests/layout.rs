//! The process boundary, checked: the root package (library, supervisor)
//! builds without libtorch, and the worker crate uses none of the
//! supervisor's modules.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).env_remove("LIBTORCH");
    cmd
}

#[test]
fn the_root_package_depends_on_no_libtorch_crate() {
    let tree = dependencies("precisiond");
    assert_eq!(
        tree.first().map(String::as_str),
        Some("precisiond"),
        "{tree:?}"
    );
    for crate_name in ["tch", "torch-sys", "cc"] {
        assert!(
            !tree.iter().any(|d| d == crate_name),
            "the root package must not depend on {crate_name}: {tree:?}"
        );
    }
}

#[test]
fn the_supervisor_builds_with_libtorch_unset() {
    // A target folder of its own: the one `cargo test` uses is locked while
    // the tests run. Kept under target/, so a second run only checks.
    let out = cargo()
        .args([
            "build",
            "-p",
            "precisiond",
            "--bins",
            "--locked",
            "--offline",
        ])
        .env("CARGO_TARGET_DIR", root().join("target/without-libtorch"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build -p precisiond without LIBTORCH failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let supervisor = root().join("target/without-libtorch/debug/precisiond");
    assert!(supervisor.is_file());
    assert!(!root()
        .join("target/without-libtorch/debug/precisiond-worker")
        .exists());
}

/// The crates `package` depends on (normal and build edges), one name per line.
fn dependencies(package: &str) -> Vec<String> {
    let out = cargo()
        .args(["tree", "-p", package, "--edges", "normal,build"])
        .args(["--prefix", "none", "--locked", "--offline"])
        .args(["--format", "{p}"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The layers, as Cargo sees them: the worker depends on precisiond-core,
/// never on the `precisiond` package (so daemon code, the config and the
/// supervisor do not compile into it: a `use precisiond::daemon` there is
/// an unresolved crate), and the core depends on neither binary's crate,
/// nor on libtorch or the daemon's watching and systemd crates.
#[test]
fn the_layers_are_crates_the_compiler_keeps_apart() {
    let worker = dependencies("precisiond-worker");
    assert!(worker.iter().any(|d| d == "precisiond-core"), "{worker:?}");
    assert!(
        !worker.iter().any(|d| d == "precisiond"),
        "the worker must not depend on the supervisor's package: {worker:?}"
    );
    let core = dependencies("precisiond-core");
    for forbidden in [
        "precisiond",
        "precisiond-worker",
        "tch",
        "torch-sys",
        "notify",
        "sd-notify",
    ] {
        assert!(
            !core.iter().any(|d| d == forbidden),
            "precisiond-core must not depend on {forbidden}: {core:?}"
        );
    }
    let supervisor = dependencies("precisiond");
    assert!(
        supervisor.iter().any(|d| d == "precisiond-core"),
        "{supervisor:?}"
    );
    assert!(
        !supervisor.iter().any(|d| d == "precisiond-worker"),
        "{supervisor:?}"
    );
}

/// `scripts/install-libtorch.sh` on an aarch64 board, with a cache that
/// already holds the aarch64 libtorch (nothing is downloaded).
fn install_on_arm(cpuinfo: &str) -> std::process::Output {
    let cache = tempfile::tempdir().unwrap();
    let lean = cache.path().join("libtorch-2.13.0-cpu-aarch64");
    std::fs::create_dir_all(&lean).unwrap();
    std::fs::write(lean.join(".complete"), "").unwrap();
    let out = Command::new(root().join("scripts/install-libtorch.sh"))
        .env_remove("LIBTORCH")
        .env("PRECISIOND_CACHE", cache.path())
        .env("PRECISIOND_ARCH", "aarch64")
        .env(
            "PRECISIOND_CPUINFO",
            root().join("tests/fixtures/cpuinfo").join(cpuinfo),
        )
        // The lean install, whatever this machine has.
        .env("PRECISIOND_CUDA", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        lean.display().to_string()
    );
    out
}

#[test]
fn make_warns_on_an_armv8_0_board_before_installing_pypis_libtorch() {
    let tx1 = install_on_arm("arm64-jetson-tx1.txt");
    let warning = String::from_utf8_lossy(&tx1.stderr);
    assert!(
        warning.contains("no LSE atomics") && warning.contains("ARM boards"),
        "{warning}"
    );
    let armv9 = install_on_arm("arm64-cortex-a510-a710-a715-x3.txt");
    assert!(
        armv9.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&armv9.stderr)
    );
}
