//! The worker's children die with it: a worker killed outright (SIGKILL,
//! no chance to clean up) leaves nothing running that would compete with
//! the next timing.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// State, parent and process group of `pid`, from /proc/PID/stat; None once
/// it is gone.
fn stat(pid: i32) -> Option<(char, i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: the fields follow its ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(1)?.parse().ok()?,
        fields.get(2)?.parse().ok()?,
    ))
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The worker's quantizing child: its parent is `worker`, its arguments
/// hold `quantize`.
fn quantizing_child_of(worker: i32) -> Option<i32> {
    pids().into_iter().find(|&pid| {
        stat(pid).is_some_and(|(_, parent, _)| parent == worker)
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"quantize"))
    })
}

/// Processes still running (zombies count as gone: they run nothing) that
/// are `pid` or in the process groups in `groups`.
fn still_running(pid: i32, groups: &[i32]) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&p| {
            stat(p).is_some_and(|(state, _, group)| {
                state != 'Z' && (p == pid || groups.contains(&group))
            })
        })
        .collect()
}

#[test]
fn a_killed_workers_quantizing_process_is_gone_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("cnn_residual.pt", dir.path());
    // Large images: the passes' calibration takes seconds (5.6 s measured),
    // so a quantizing process that outlived its worker would be seen.
    std::fs::write(
        dir.path().join("cnn_residual.pt.toml"),
        "[[inputs]]\nshape = [1, 3, 640, 640]\n",
    )
    .unwrap();
    let mut worker = worker()
        .arg("run")
        .arg(&model)
        .args(["--no-probe", "--threads", "2", "--devices", "cpu"])
        .args(["--precisions", "int8", "--max-seconds", "0.3"])
        // A group of its own: whatever it started and left behind is found
        // by group after it is gone.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let worker_pid = worker.id() as i32;
    let looking = Instant::now();
    let quantizer = loop {
        if let Some(pid) = quantizing_child_of(worker_pid) {
            break pid;
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the worker ended ({status}) before a quantizing process was seen");
        }
        assert!(
            looking.elapsed() < Duration::from_secs(120),
            "no quantizing process in 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (_, _, quantizer_group) = stat(quantizer).expect("the quantizing process runs");

    worker.kill().unwrap();
    let killed = Instant::now();
    worker.wait().unwrap();
    let groups = [worker_pid, quantizer_group];
    loop {
        let left = still_running(quantizer, &groups);
        if left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "1 s after the worker's SIGKILL these still run: {left:?} (quantizing process {quantizer})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "quantizing process {quantizer} (group {quantizer_group}) and the worker's group gone {:.1} ms after the worker's SIGKILL",
        killed.elapsed().as_secs_f64() * 1e3
    );
}
