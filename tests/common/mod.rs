//! Helpers shared by the integration tests: the real binaries, the
//! committed fixture models, and temporary drop folders.
#![allow(dead_code)]

pub mod calibrated;
pub mod machine;
pub mod skip;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use skip::{skip, skip_part};

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

/// Checks a Prometheus text exposition: with Prometheus's own `promtool
/// check metrics` where it is on PATH (Debian: `apt-get install
/// prometheus`), and always with the `prometheus-parse` crate, every line
/// of which must parse as HELP, TYPE or a sample. Returns the samples.
pub fn check_prometheus_text(text: &str) -> Vec<prometheus_parse::Sample> {
    use std::io::{BufRead, Write};
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        skip_part(
            "promtool check metrics",
            "promtool is not on PATH (`make test-deps` installs Debian's prometheus): \
             checked with prometheus-parse alone",
        );
    }
    for line in text.lines() {
        if !line.starts_with('#') {
            parse_prometheus_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}\n{text}"));
        }
        let info = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(
                info,
                prometheus_parse::LineInfo::Ignored | prometheus_parse::LineInfo::Empty
            ),
            "not a HELP, TYPE or sample line: {line:?}\n{text}"
        );
        if let prometheus_parse::LineInfo::Sample { timestamp, .. } = info {
            assert!(timestamp.is_none(), "a timestamp in {line:?}");
        }
    }
    let scrape = prometheus_parse::Scrape::parse(text.as_bytes().lines()).unwrap();
    assert!(!scrape.samples.is_empty(), "no samples in\n{text}");
    scrape.samples
}

/// One sample line of the text format, read by its grammar (prometheus-parse
/// splits labels on commas and does not unescape): the metric name, the
/// labels with their values unescaped, and the value. No timestamp.
pub type PromSample = (String, Vec<(String, String)>, f64);

pub fn parse_prometheus_sample(line: &str) -> Result<PromSample, String> {
    let is_name = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
    };
    let mut chars = line.char_indices().peekable();
    let mut name = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if !is_name(c, name.is_empty()) {
            break;
        }
        name.push(c);
        chars.next();
    }
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut labels = Vec::new();
    if chars.peek().map(|&(_, c)| c) == Some('{') {
        chars.next();
        loop {
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
                return Err("bad label name".into());
            }
            if chars.next().map(|(_, c)| c) != Some('=')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("label {key}: expected =\""));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None | Some('\n') => return Err("unterminated label value".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if labels.iter().any(|(k, _): &(String, String)| *k == key) {
                return Err(format!("label {key} twice"));
            }
            labels.push((key, value));
            match chars.next().map(|(_, c)| c) {
                Some(',') => continue,
                Some('}') => break,
                _ => return Err("expected , or }".into()),
            }
        }
    }
    if chars.next().map(|(_, c)| c) != Some(' ') {
        return Err("expected one space before the value".into());
    }
    let rest: String = chars.map(|(_, c)| c).collect();
    let value = match rest.as_str() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v if !v.is_empty() && !v.contains(' ') => {
            v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?
        }
        v => return Err(format!("bad value (or a timestamp): {v:?}")),
    };
    Ok((name, labels, value))
}
