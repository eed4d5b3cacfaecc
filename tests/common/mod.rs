//! Helpers shared by the integration tests: the real binaries, the
//! committed fixture models, and temporary drop folders.
#![allow(dead_code)]

pub mod calibrated;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn precisiond() -> Command {
    Command::new(env!("CARGO_BIN_EXE_precisiond"))
}

/// The worker binary, which the workspace builds beside `precisiond` (it
/// is another crate's, so cargo gives the tests no CARGO_BIN_EXE for it).
pub fn worker_exe() -> PathBuf {
    let worker = Path::new(env!("CARGO_BIN_EXE_precisiond")).with_file_name("precisiond-worker");
    assert!(
        worker.is_file(),
        "{} is missing: run the tests with `make test` (or `cargo test --workspace`), which build the worker crate too",
        worker.display()
    );
    worker
}

pub fn worker() -> Command {
    Command::new(worker_exe())
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies a fixture model (and its settings file, if any) into `dir`.
pub fn copy_fixture(name: &str, dir: &Path) -> PathBuf {
    let dest = dir.join(name);
    std::fs::copy(fixture(name), &dest).expect("copy fixture");
    let settings = fixture(&format!("{name}.toml"));
    if settings.exists() {
        std::fs::copy(settings, dir.join(format!("{name}.toml"))).expect("copy settings");
    }
    dest
}

/// `precisiond run` with short budgets and no probe, so tests stay fast;
/// on the CPU alone unless `extra` names devices, so the tests count the
/// same results on a machine with a GPU.
pub fn run_quick(model: &Path, extra: &[&str]) -> Output {
    let mut cmd = precisiond();
    cmd.arg("run")
        .arg(model)
        .args(["--no-probe", "--threads", "2"]);
    if !extra.contains(&"--max-seconds") {
        cmd.args(["--max-seconds", "0.3"]);
    }
    if !extra.contains(&"--devices") {
        cmd.args(["--devices", "cpu"]);
    }
    cmd.args(extra).output().expect("precisiond runs")
}

pub fn report_of(model: &Path) -> toml::Table {
    let path = calibrated::report_path(model);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("report {} is not TOML: {e}\n{text}", path.display()))
}

pub fn text(output: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Real competing load: `n` shell processes spinning on the CPU, started
/// by the test and killed (by their own pids) when this is dropped.
pub struct BusyLoad {
    children: Vec<std::process::Child>,
}

impl BusyLoad {
    pub fn start(n: usize) -> BusyLoad {
        let children = (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("start a busy process")
            })
            .collect();
        // Let the scheduler see them before anything is measured.
        std::thread::sleep(std::time::Duration::from_millis(300));
        BusyLoad { children }
    }
}

impl Drop for BusyLoad {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// As many busy processes as this process may use CPUs, so that a worker
/// gets at most half of each.
pub fn cpus_here() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
