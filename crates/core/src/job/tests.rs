use super::*;
use crate::accuracy::AccuracyOverrides;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Knobs with every field away from its default. A struct literal without
/// `..`: a knob added later does not compile here until it is set.
fn every_knob_set() -> Knobs {
    Knobs {
        precisions: vec![Precision::Int8, Precision::Fp32],
        threads: 3,
        max_seconds: 0.5,
        target_ci_percent: 2.5,
        build_timeout_seconds: 90.0,
        probe: false,
        devices: vec![DeviceRequest::Cpu, DeviceRequest::Cuda(1)],
        trtexec: Some(PathBuf::from("/opt/trt/bin/trtexec")),
        op_libraries: vec![
            PathBuf::from("/opt/ops/libmine.so"),
            PathBuf::from(OsStr::from_bytes(b"/opt/ops/lib\xff.so")),
        ],
        profile: true,
        chart: false,
        accuracy: AccuracyThresholds {
            min_cosine: 0.5,
            min_sqnr_db: 7.0,
            min_top1_agreement: 0.25,
        },
        busy_threshold: 0.5,
        contended_ci_percent: 12.0,
        contended_p90_ratio: 2.0,
        clock_drop_percent: 33.0,
    }
}

/// A spec with every field set, none to its default (the same rule: no `..`).
fn every_field_set() -> JobSpec {
    JobSpec {
        model: PathBuf::from(OsStr::from_bytes(b"/d/m\xff.pt")),
        report: PathBuf::from("/out/m.report.toml"),
        settings: Some(PathBuf::from("/s/m.toml")),
        state_dir: PathBuf::from("/state"),
        precisions: Some(vec![Precision::Bf16]),
        devices: Some(vec![DeviceRequest::AllCuda]),
        knobs: every_knob_set(),
        timeout_seconds: Some(42.0),
        untrusted_folder: true,
        started_busy: Some(0.75),
    }
}

fn table<T: Serialize>(value: &T) -> toml::Table {
    toml::Table::try_from(value).unwrap()
}

#[test]
fn a_spec_with_every_field_set_round_trips() {
    let spec = every_field_set();
    let text = spec.to_toml();
    assert_eq!(JobSpec::parse(&text).unwrap(), spec, "{text}");
    // Every field is written (none skipped as empty) ...
    let written = table(&spec);
    for key in [
        "model",
        "report",
        "settings",
        "state_dir",
        "precisions",
        "devices",
        "knobs",
        "timeout_seconds",
        "untrusted_folder",
        "started_busy",
    ] {
        assert!(written.contains_key(key), "{key} missing from\n{text}");
    }
    assert_eq!(written.len(), 10, "a field the test does not know:\n{text}");
}

#[test]
fn every_knob_is_away_from_its_default_and_survives() {
    let set = table(&every_knob_set());
    let default = table(&Knobs::default());
    for (key, value) in &set {
        assert_ne!(default.get(key), Some(value), "{key} is at its default");
    }
    // trtexec is absent by default; every other knob is written either way.
    assert_eq!(set.len(), default.len() + 1);
    let back: Knobs = set.clone().try_into().unwrap();
    assert_eq!(back, every_knob_set());
}

#[test]
fn build_resolves_the_defaults_beside_the_model() {
    let knobs = Knobs {
        threads: 0,
        ..Knobs::default()
    };
    let spec = JobSpec::build(PathBuf::from("/d/m.pt"), knobs, Given::default()).unwrap();
    assert_eq!(spec.report, PathBuf::from("/d/m.pt.report.toml"));
    assert_eq!(spec.state_dir, PathBuf::from("/d/.precisiond"));
    assert_eq!(spec.settings_path(), PathBuf::from("/d/m.pt.toml"));
    assert!(spec.knobs.threads > 0, "0 means all cores, resolved");
    assert_eq!(spec.timeout(), None);
}

#[test]
fn build_checks_every_bound_once() {
    let bad = |knobs: Knobs| {
        JobSpec::build(PathBuf::from("/d/m.pt"), knobs, Given::default())
            .unwrap_err()
            .knob
    };
    let d = Knobs::default;
    assert_eq!(
        bad(Knobs {
            contended_ci_percent: 0.0,
            ..d()
        }),
        Knob::ContendedCiPercent
    );
    assert_eq!(
        bad(Knobs {
            clock_drop_percent: 0.0,
            ..d()
        }),
        Knob::ClockDropPercent
    );
    assert_eq!(
        bad(Knobs {
            build_timeout_seconds: -1.0,
            ..d()
        }),
        Knob::BuildTimeout
    );
    assert_eq!(
        bad(Knobs {
            max_seconds: f64::NAN,
            ..d()
        }),
        Knob::MaxSeconds
    );
    assert_eq!(
        bad(Knobs {
            precisions: vec![],
            ..d()
        }),
        Knob::Precisions
    );
    let e = JobSpec::build(
        PathBuf::from("/d/m.pt"),
        d(),
        Given {
            timeout_seconds: Some(0.0),
            ..Given::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.knob, Knob::WorkerTimeout);
}

#[test]
fn a_bad_knob_is_named_as_a_key_or_as_a_flag_without_rewriting() {
    let e = Knob::ContendedCiPercent.check(0.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`contended_ci_percent` must be between 0 and 100, got 0"
    );
    assert_eq!(
        BadFlag(e).to_string(),
        "--contended-ci-percent must be between 0 and 100, got 0"
    );
    let e = Knob::MinTop1Agreement.check(2.0).unwrap_err();
    assert_eq!(
        BadFlag(e).to_string(),
        "--min-top1-agreement must be between 0 and 1, got 2"
    );
    for knob in Knob::ALL {
        assert!(knob.flag().starts_with("--"));
        assert!(!knob.key().contains('-'), "{}", knob.key());
    }
}

#[test]
fn a_spec_out_of_bounds_is_refused_when_read() {
    let mut spec = every_field_set();
    spec.knobs.busy_threshold = 25.0;
    let e = JobSpec::parse(&spec.to_toml()).unwrap_err();
    assert!(
        matches!(e, SpecError::Bad(b) if b.knob == Knob::BusyThreshold),
        "{e}"
    );
    assert!(matches!(
        JobSpec::parse("model = 3\n"),
        Err(SpecError::Syntax(_))
    ));
}

#[test]
fn the_command_line_wins_over_the_settings_file_which_wins_over_the_knobs() {
    let knobs = every_knob_set();
    let settings = ModelSettings {
        precisions: Some(vec![Precision::Fp16]),
        devices: Some(vec![DeviceRequest::Cpu]),
        max_seconds: Some(9.0),
        accuracy: Some(AccuracyOverrides {
            min_cosine: Some(0.9),
            ..AccuracyOverrides::default()
        }),
        ..ModelSettings::default()
    };
    let from_config = JobSpec::build(PathBuf::from("/d/m.pt"), knobs.clone(), Given::default())
        .unwrap()
        .with_settings(&settings);
    assert_eq!(from_config.precisions, vec![Precision::Fp16]);
    assert_eq!(from_config.devices, vec![DeviceRequest::Cpu]);
    assert_eq!(from_config.bench.max_seconds, 9.0);
    assert_eq!(from_config.bench.target_rel_ci, 0.025);
    assert_eq!(from_config.accuracy.min_cosine, 0.9);
    assert_eq!(from_config.accuracy.min_sqnr_db, 7.0);
    let flagged = JobSpec::build(
        PathBuf::from("/d/m.pt"),
        knobs.clone(),
        Given {
            precisions: Some(vec![Precision::Int8]),
            devices: Some(vec![DeviceRequest::Auto]),
            ..Given::default()
        },
    )
    .unwrap()
    .with_settings(&settings);
    assert_eq!(flagged.precisions, vec![Precision::Int8]);
    assert_eq!(flagged.devices, vec![DeviceRequest::Auto]);
    let bare = JobSpec::build(PathBuf::from("/d/m.pt"), knobs.clone(), Given::default())
        .unwrap()
        .with_settings(&ModelSettings::default());
    assert_eq!(bare.precisions, knobs.precisions);
    assert_eq!(bare.devices, knobs.devices);
    assert_eq!(bare.bench.max_seconds, knobs.max_seconds);
    assert_eq!(bare.accuracy, knobs.accuracy);
}
