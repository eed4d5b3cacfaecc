//! The conditions of a timing, end to end with real load: `precisiond run`
//! next to busy processes the test starts is marked contended with the
//! figures; on a quiet machine it is not. (The reading of CPU clocks and
//! thermal zones on recorded sysfs trees is tested in crates/core/src/conditions/tests.rs:
//! this VM has neither.)

mod common;

use common::*;
use precisiond_core::conditions::cpu;
use std::path::Path;
use std::time::Duration;

fn fp(report: &toml::Table, precision: &str) -> toml::Table {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_table().unwrap().clone())
        .find(|r| r["precision"].as_str() == Some(precision))
        .unwrap_or_else(|| panic!("no {precision} result"))
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn float(t: &toml::Table, key: &str) -> f64 {
    t[key]
        .as_float()
        .or_else(|| t[key].as_integer().map(|i| i as f64))
        .unwrap_or_else(|| panic!("{key} is not a number: {t:?}"))
}

/// The throttling fields: read where the kernel gives them, "not available
/// here" where it does not.
fn assert_throttling_said(conditions: &toml::Table) {
    let throttling = conditions["throttling"].as_table().unwrap();
    let missing = strings(throttling.get("not_available")).join("\n");
    if Path::new("/sys/devices/system/cpu/cpu0/cpufreq").is_dir() {
        assert!(
            throttling.contains_key("clock_khz_before"),
            "{throttling:?}"
        );
    } else {
        assert!(
            missing.contains("CPU clock: not available here"),
            "{missing}"
        );
    }
    if Path::new("/sys/class/thermal/thermal_zone0").exists() {
        assert!(
            throttling.contains_key("zones_before") && throttling.contains_key("zones_after"),
            "{throttling:?}"
        );
        assert!(!missing.contains("thermal zones"), "{missing}");
    } else {
        assert!(
            missing.contains("thermal zones: not available here"),
            "{missing}"
        );
    }
}

#[test]
fn a_run_next_to_busy_processes_is_marked_contended_with_the_figures() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_fixture("cnn_residual.pt", dir.path());
    let load = BusyLoad::start(cpus_here());
    let out = run_quick(
        &model,
        &["--precisions", "fp32,fp16", "--max-seconds", "0.5"],
    );
    drop(load);
    assert!(out.status.success(), "{}", text(&out));
    let report = report_of(&model);
    let fp32 = fp(&report, "fp32");
    assert_eq!(fp32["status"].as_str(), Some("ok"), "{fp32:?}");
    assert_eq!(fp32["quality"].as_str(), Some("contended"), "{fp32:?}");
    let c = fp32["conditions"].as_table().unwrap();
    let share = float(c, "others_share");
    assert!(share > 0.25, "others used only {share} of the CPUs: {c:?}");
    assert!(
        float(c, "others_cpu_seconds") > 0.25 * float(c, "wall_seconds"),
        "{c:?}"
    );
    assert!(c["cpus"].as_integer().unwrap() >= 1);
    assert!(c.contains_key("involuntary_switches") && c.contains_key("steal_seconds"));
    let why = strings(c.get("why")).join("\n");
    assert!(why.contains("other processes used"), "{why}");
    assert_throttling_said(c);
    // Timed once more inside the same job, and said so.
    let notes = strings(fp32.get("notes")).join("\n");
    assert!(
        notes.contains("timed twice: the first timing was contended"),
        "{notes}"
    );
    // Never silently used for a speedup.
    let fp16 = fp(&report, "fp16");
    assert!(!fp16.contains_key("speedup_vs_fp32"), "{fp16:?}");
    let notes16 = strings(fp16.get("notes")).join("\n");
    assert!(notes16.contains("speedup_vs_fp32 withheld"), "{notes16}");
    // Shown in the summary table.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok (contended)"), "{stdout}");
    assert!(
        stdout.contains("cpu fp32: CONTENDED: other processes used"),
        "{stdout}"
    );
}

// Needs a quiet second now and then within three minutes: CI runs the
// tests one at a time on a machine of its own. On a machine that stays busy
// the other branch is checked instead (a run others shared beyond
// busy_threshold is marked contended and says why) and the test says it
// skipped the quiet case.
#[test]
fn a_quiet_run_is_not_marked_contended() {
    // This machine may be shared: the quiet case is the first run during
    // which others used little of the CPUs, each started once a second of
    // quiet was seen, tried for up to three minutes.
    let mut seen = Vec::new();
    let mut last_busy: Option<(f64, toml::Table)> = None;
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(180) {
        let cpus = cpu::allowed_cpus();
        let now = cpu::busy_share(Path::new("/"), cpus.as_deref(), Duration::from_secs(1)).unwrap();
        if now > 0.05 {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let model = copy_fixture("cnn_residual.pt", dir.path());
        let out = run_quick(&model, &["--precisions", "fp32", "--max-seconds", "1"]);
        assert!(out.status.success(), "{}", text(&out));
        let fp32 = fp(&report_of(&model), "fp32");
        let c = fp32["conditions"].as_table().unwrap().clone();
        let share = float(&c, "others_share");
        if share < 0.1 {
            assert_eq!(
                fp32["quality"].as_str(),
                Some("clean"),
                "a run during which others used {share} of the CPUs: {fp32:?}"
            );
            assert!(!c.contains_key("why"), "{c:?}");
            assert_throttling_said(&c);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("contended"), "{stdout}");
            return;
        }
        seen.push(share);
        // busy_threshold's default: above it the run must say it was shared.
        if share > 0.25 {
            last_busy = Some((share, fp32));
        }
    }
    // Never quiet: a run that others shared is what this machine can show,
    // and that run must be marked so (one is made if no quiet second came).
    let (share, fp32) = last_busy.unwrap_or_else(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = copy_fixture("cnn_residual.pt", dir.path());
        let out = run_quick(&model, &["--precisions", "fp32", "--max-seconds", "1"]);
        assert!(out.status.success(), "{}", text(&out));
        let fp32 = fp(&report_of(&model), "fp32");
        let share = float(fp32["conditions"].as_table().unwrap(), "others_share");
        (share, fp32)
    });
    let c = fp32["conditions"].as_table().unwrap();
    if share > 0.25 {
        assert_eq!(fp32["quality"].as_str(), Some("contended"), "{fp32:?}");
        let why = strings(c.get("why")).join("\n");
        assert!(why.contains("other processes used"), "{why}");
    }
    assert_throttling_said(c);
    eprintln!(
        "SKIPPED a_quiet_run_is_not_marked_contended: the machine was not quiet for three \
         minutes (runs started in a quiet second saw others use {seen:?} of the CPUs; the last \
         run, {share} shared, was checked for its contended marking instead)"
    );
}
