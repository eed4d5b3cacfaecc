//! The reading and the flagging on recorded sysfs trees
//! (tests/fixtures/sysfs, real kernel file formats): this VM has neither
//! cpufreq nor thermal zones.

use super::thermal::{ThermalSnapshot, Throttling};
use super::*;
use std::path::PathBuf;

fn recorded(tree: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/sysfs")
        .join(tree)
}

fn throttling(tree: &str) -> Throttling {
    let before = ThermalSnapshot::take(&recorded(&format!("{tree}/before")), None);
    let after = ThermalSnapshot::take(&recorded(&format!("{tree}/after")), None);
    Throttling::between(&before, &after)
}

fn steady_stats() -> LatencyStats {
    LatencyStats::from_samples(&[10.0; 20]).unwrap()
}

fn quiet(throttling: Throttling) -> Conditions {
    Conditions {
        wall_seconds: 2.0,
        cpus: 2,
        worker_cpu_seconds: 3.9,
        others_cpu_seconds: 0.02,
        others_share: 0.005,
        steal_seconds: 0.0,
        involuntary_switches: 3,
        load_average_start: Some(0.1),
        load_average_end: Some(1.1),
        throttling,
        why: Vec::new(),
    }
}

#[test]
fn recorded_pi_that_heats_up_is_read_and_flagged_throttled() {
    let t = throttling("pi4-hot");
    assert_eq!(t.clock_khz_before, Some(1_500_000));
    assert_eq!(t.clock_khz_after, Some(1_000_000));
    assert_eq!(t.clock_source.as_deref(), Some("cpuinfo_cur_freq"));
    assert_eq!(t.clock_khz_lowest_used, Some(600_000));
    assert_eq!(t.zones_after[0].millicelsius, Some(81_234));
    assert_eq!(
        t.zones_after[0].trip_millicelsius,
        Some(80_000),
        "passive trip first"
    );
    assert_eq!(t.zones_after[1].millicelsius, None, "unreadable temp");
    assert_eq!(t.firmware_flags.as_deref(), Some("throttled (0x50004)"));
    assert!(t.not_available.is_empty(), "{:?}", t.not_available);

    let mut c = quiet(t);
    let quality = c.judge(&Limits::default(), &steady_stats(), Some(0.01), 10);
    assert_eq!(quality, Quality::Throttled);
    let why = c.why.join("\n");
    assert!(why.contains("1500 MHz to 600 MHz"), "{why}");
    assert!(
        why.contains("thermal_zone0 (cpu-thermal) reached 81.2 °C"),
        "{why}"
    );
    assert!(why.contains("firmware reports: throttled"), "{why}");
}

#[test]
fn recorded_steady_laptop_is_clean_and_reads_scaling_cur_freq() {
    let t = throttling("x86-steady");
    assert_eq!(t.clock_source.as_deref(), Some("scaling_cur_freq"));
    assert_eq!(t.clock_khz_after, Some(2_400_000));
    assert_eq!(t.clock_khz_lowest_used, None, "no time_in_state there");
    assert_eq!(
        t.not_available.len(),
        1,
        "only the Pi's flags: {:?}",
        t.not_available
    );
    let mut c = quiet(t);
    assert_eq!(
        c.judge(&Limits::default(), &steady_stats(), Some(0.01), 10),
        Quality::Clean,
        "{:?}",
        c.why
    );
    assert!(c.why.is_empty());
}

#[test]
fn a_tree_without_cpufreq_or_thermal_zones_says_not_available() {
    let empty = tempfile::tempdir().unwrap();
    let snap = ThermalSnapshot::take(empty.path(), None);
    let t = Throttling::between(&snap, &snap);
    let words = t.not_available.join("\n");
    assert!(words.contains("CPU clock: not available here"), "{words}");
    assert!(
        words.contains("thermal zones: not available here"),
        "{words}"
    );
    assert!(
        words.contains("firmware throttling flags: not read"),
        "{words}"
    );
    assert!(t.problems(0.1).is_empty());
}

#[test]
fn others_above_the_threshold_or_a_wide_spread_mark_a_result_contended() {
    let limits = Limits::default();
    let mut busy = quiet(Throttling::default());
    busy.others_share = 0.6;
    busy.others_cpu_seconds = 2.4;
    assert_eq!(
        busy.judge(&limits, &steady_stats(), Some(0.01), 10),
        Quality::Contended
    );
    assert!(
        busy.why[0].contains("other processes used 60% of the 2 CPU(s)"),
        "{:?}",
        busy.why
    );

    let mut samples = vec![25.0; 12];
    samples.extend([433.0, 500.0, 563.0, 440.0, 450.0, 470.0, 480.0, 490.0]);
    let spread = LatencyStats::from_samples(&samples).unwrap();
    let mut noisy = quiet(Throttling::default());
    assert_eq!(
        noisy.judge(&limits, &spread, Some(0.16), 10),
        Quality::Contended
    );
    let why = noisy.why.join("\n");
    assert!(why.contains("±16.0%"), "{why}");
    assert!(why.contains("x the median"), "{why}");

    // A short sample's wide interval is not taken for contention.
    let mut short = quiet(Throttling::default());
    assert_eq!(
        short.judge(&limits, &spread, Some(0.16), 50),
        Quality::Clean
    );
}
