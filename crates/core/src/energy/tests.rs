//! Tests on recorded sysfs trees (tests/fixtures/energy/<case>/, see its
//! README.md); no real sensor is read but by nvml_reads_gpu_0, where
//! there is a GPU.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/energy")
        .join(case)
}

/// A writable copy of a fixture, for tests that change counter values.
fn copy_fixture(case: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                // The class folder's flat subzone links, kept as links.
                std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), target).unwrap();
            } else if kind.is_dir() {
                copy(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(case), dir.path());
    dir
}

const NO_NVML: &str = "/nonexistent/libnvidia-ml.so.1";

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs()
}

// ---- RAPL ----

#[test]
fn rapl_intel_counts_package_and_dram_once() {
    let s = rapl::find(&fixture("rapl_intel")).expect("RAPL zones");
    let info = s.info();
    // package-0 once (the intel-rapl-mmio:0 duplicate is dropped), its dram
    // subzone; no core/uncore (inside the package), no psys (contains it).
    assert_eq!(info.rails, ["package-0", "dram"]);
    assert_eq!(info.kind, "rapl");
    assert_eq!(info.covers, "cpu");
    assert!(info.readable, "{info:?}");
    let Source::Rapl(r) = &s.source else {
        panic!("not RAPL")
    };
    let dirs: Vec<String> = r
        .domains
        .iter()
        .map(|d| d.dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, ["intel-rapl:0", "intel-rapl:0:2"]);
}

#[test]
fn rapl_amd_is_package_only() {
    let s = for_cpu(&fixture("rapl_amd")).unwrap();
    assert_eq!(s.info().rails, ["package-0"]);
    assert_eq!(s.kind(), SensorKind::Rapl);
}

#[test]
fn rapl_mmio_alone_and_psys_alone_are_used() {
    let dir = copy_fixture("rapl_intel");
    let powercap = dir.path().join("sys/class/powercap");
    fs::remove_dir_all(powercap.join("intel-rapl:0")).unwrap();
    // Only the MMIO package and psys are left: the MMIO package counts.
    let s = rapl::find(dir.path()).unwrap();
    let Source::Rapl(r) = &s.source else {
        panic!("not RAPL")
    };
    assert_eq!(r.domains.len(), 1);
    assert!(r.domains[0].dir.ends_with("intel-rapl-mmio:0"));
    // No package at all: psys alone.
    fs::remove_dir_all(powercap.join("intel-rapl-mmio:0")).unwrap();
    assert_eq!(rapl::find(dir.path()).unwrap().info().rails, ["psys"]);
}

#[test]
fn rapl_counter_delta_handles_wraparound() {
    assert_eq!(rapl::counter_delta(100, 250, 1000), 150);
    assert_eq!(rapl::counter_delta(900, 100, 1000), 200);
    assert_eq!(rapl::counter_delta(5, 5, 1000), 0);
}

#[test]
fn rapl_wrap_across_a_run() {
    let dir = copy_fixture("rapl_wrap");
    let s = for_cpu(dir.path()).unwrap();
    let running = s.start().unwrap();
    // The counter (262143000000 of 262143328850) wraps during the run.
    fs::write(
        dir.path().join("sys/class/powercap/intel-rapl:0/energy_uj"),
        "171150\n",
    )
    .unwrap();
    let e = running.finish().unwrap();
    // (262143328850 - 262143000000) + 171150 = 500000 µJ
    assert!(close(e.joules, 0.5, 1e-12), "{e:?}");
    assert_eq!(e.samples, 2);
    assert_eq!(e.sampling_hz, None);
    assert_eq!(e.resolution_j, Some(1e-6));
}

#[test]
fn rapl_sums_package_and_dram_deltas() {
    let dir = copy_fixture("rapl_intel");
    let s = for_cpu(dir.path()).unwrap();
    let running = s.start().unwrap();
    let zone = dir.path().join("sys/class/powercap/intel-rapl:0");
    fs::write(zone.join("energy_uj"), "48214006731\n").unwrap(); // +2 J
    fs::write(zone.join("intel-rapl:0:2/energy_uj"), "7712865812\n").unwrap(); // +0.5 J
    fs::write(zone.join("intel-rapl:0:0/energy_uj"), "99999999999\n").unwrap(); // core: ignored
    let e = running.finish().unwrap();
    assert!(close(e.joules, 2.5, 1e-12), "{e:?}");
}

#[test]
fn permission_errors_say_root_only_since_5_10() {
    let path = Path::new("/sys/class/powercap/intel-rapl:0/energy_uj");
    let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let e = EnergyError::reading(path, e);
    assert!(matches!(e, EnergyError::Permission { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "energy: not readable (permission): /sys/class/powercap/intel-rapl:0/energy_uj \
             is root-only since Linux 5.10"
        ),
        "{msg}"
    );
    // EPERM maps to the same kind as EACCES.
    let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
    assert!(matches!(
        EnergyError::reading(path, eperm),
        EnergyError::Permission { .. }
    ));
    let other = std::io::Error::from(std::io::ErrorKind::NotFound);
    let other = EnergyError::reading(path, other);
    assert!(matches!(other, EnergyError::Read { .. }), "{other:?}");
    assert!(other.to_string().starts_with("energy: cannot read "));
}

#[test]
fn an_unreadable_counter_makes_the_sensor_unreadable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = copy_fixture("rapl_amd");
    let file = dir.path().join("sys/class/powercap/intel-rapl:0/energy_uj");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let s = rapl::find(dir.path()).unwrap();
    if fs::read(&file).is_ok() {
        // Root (CAP_DAC_OVERRIDE) reads a mode-000 file: the other side,
        // a readable sensor.
        assert!(s.info().readable, "{:?}", s.info());
        assert!(s.start().is_ok());
        return crate::skip::skip(
            "this process reads a mode-000 file (root): the unreadable sensor is not seen here",
        );
    }
    assert!(!s.info().readable);
    assert!(s.info().why_not.unwrap().contains("(permission)"));
    assert!(s.start().is_err());
    let err = for_cpu(dir.path()).unwrap_err();
    assert!(matches!(err, EnergyError::Permission { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("root-only since Linux 5.10"), "{err}");
}

#[test]
fn nothing_found_says_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let err = for_cpu(dir.path()).unwrap_err();
    assert!(matches!(err, EnergyError::NoSensor), "{err:?}");
    assert_eq!(
        err.to_string(),
        "no energy sensor found (no RAPL powercap zones, no INA3221/INA238 hwmon)"
    );
    assert!(find_all_with(dir.path(), NO_NVML).is_empty());
}

// ---- Jetson ----

/// Samples a board for ~0.2 s: static files, so constant power.
fn measure(sensor: &Sensor) -> Energy {
    let running = sensor.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    running.finish().unwrap()
}

fn assert_constant_power(e: &Energy, watts: f64) {
    assert!(e.seconds >= 0.2, "{e:?}");
    assert!(close(e.joules, watts * e.seconds, 1e-9), "{e:?}");
    assert!(e.samples >= 5, "{e:?}");
    let hz = e.sampling_hz.unwrap();
    assert!(hz > 10.0 && hz < 60.0, "{e:?}");
    assert_eq!(e.resolution_j, None);
}

#[test]
fn jetson_orin_uses_vdd_in_alone() {
    let s = for_cpu(&fixture("jetson_orin_jp5")).unwrap();
    let info = s.info();
    assert_eq!(info.rails, ["VDD_IN"]);
    assert_eq!(info.kind, "ina3221");
    assert_eq!(info.covers, "board");
    assert_eq!(info.name, "Jetson VDD_IN (ina3221 1-0040)");
    // 5080 mV × 1120 mA
    let Source::Board(b) = &s.source else {
        panic!("not a board")
    };
    assert!(close(b.watts().unwrap(), 5.6896, 1e-12));
    assert_constant_power(&measure(&s), 5.6896);
}

#[test]
fn jetson_nano_jp4_iio_uses_pom_5v_in() {
    let s = for_cpu(&fixture("jetson_nano_jp4")).unwrap();
    assert_eq!(s.info().rails, ["POM_5V_IN"]);
    assert_eq!(s.info().name, "Jetson POM_5V_IN (ina3221 6-0040)");
    // in_power0_input = 3456 mW
    assert_constant_power(&measure(&s), 3.456);
    let (all, _) = hwmon::rails(&fixture("jetson_nano_jp4"));
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]);
}

#[test]
fn jetson_without_total_sums_every_rail() {
    let s = for_cpu(&fixture("jetson_no_total")).unwrap();
    // in7 ("sum of shunt voltages") is not a rail.
    assert_eq!(s.info().rails, ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]);
    assert_eq!(s.info().name, "Jetson sum of 3 rails (ina3221 hwmon3)");
    // 5 V × (1.6 + 0.4 + 0.8) A
    assert_constant_power(&measure(&s), 14.0);
}

#[test]
fn the_total_rail_is_never_added_to_its_parts() {
    let (all, _) = hwmon::rails(&fixture("jetson_orin_jp5"));
    assert_eq!(all.len(), 3);
    let chosen = hwmon::choose(&all);
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].name, "VDD_IN");
    // Case-insensitive, and VIN counts as a total too.
    let dir = copy_fixture("jetson_no_total");
    fs::write(dir.path().join("sys/class/hwmon/hwmon3/in3_label"), "vin\n").unwrap();
    let s = for_cpu(dir.path()).unwrap();
    assert_eq!(s.info().rails, ["vin"]);
}

#[test]
fn jetson_absent_rails_are_skipped_with_a_note() {
    let s = for_cpu(&fixture("jetson_absent_rail")).unwrap();
    assert_eq!(s.info().rails, ["VDD_GPU_SOC"]);
    let notes = s.notes().join("\n");
    assert!(
        notes.contains("rail VDD_CPU_CV of ina3221 hwmon2 skipped"),
        "{notes}"
    );
    assert!(notes.contains("in2_input"), "{notes}");
    assert!(notes.contains("labelled NC"), "{notes}");
    assert_constant_power(&measure(&s), 6.0);
}

#[test]
fn a_board_without_readable_rails_is_not_readable() {
    let dir = copy_fixture("jetson_absent_rail");
    fs::remove_file(dir.path().join("sys/class/hwmon/hwmon2/curr1_input")).unwrap();
    let s = hwmon::find(dir.path()).unwrap();
    assert!(!s.info().readable);
    let why = s.info().why_not.unwrap();
    assert!(
        why.starts_with("energy: INA3221/INA238 found but no rail"),
        "{why}"
    );
    let err = for_cpu(dir.path()).unwrap_err();
    assert!(matches!(err, EnergyError::NoRail { .. }), "{err:?}");
    assert_eq!(err.to_string(), why);
}

#[test]
fn an_ina238_is_read_through_its_power_file() {
    let dir = tempfile::tempdir().unwrap();
    let hw = dir.path().join("sys/class/hwmon/hwmon0");
    fs::create_dir_all(&hw).unwrap();
    for (file, value) in [
        ("name", "ina238"),
        ("label", "VDD_IN"),
        ("in1_input", "19000"),
        ("curr1_input", "1000"),
        ("power1_input", "19100000"),
    ] {
        fs::write(hw.join(file), format!("{value}\n")).unwrap();
    }
    let s = for_cpu(dir.path()).unwrap();
    assert_eq!(s.info().kind, "ina238");
    assert_eq!(s.info().rails, ["VDD_IN"]);
    let Source::Board(b) = &s.source else {
        panic!("not a board")
    };
    assert!(close(b.watts().unwrap(), 19.1, 1e-12));
}

#[test]
fn sensor_info_serialises_without_an_empty_why_not() {
    let info = for_cpu(&fixture("jetson_orin_jp5")).unwrap().info();
    let text = toml::to_string(&info).unwrap();
    assert!(!text.contains("why_not"), "{text}");
    let back: SensorInfo = toml::from_str(&text).unwrap();
    assert_eq!(back, info);
}

// ---- NVML and CUDA ----

#[test]
fn for_cuda_without_nvml_names_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let err = for_cuda_with(dir.path(), 0, "libnvidia-ml.so.1-not-here").unwrap_err();
    assert!(
        matches!(&err, EnergyError::NoCudaSensor { index: 0, board: None, nvml }
            if matches!(**nvml, EnergyError::Nvml(NvmlError::NotPresent { .. }))),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.starts_with("no energy sensor for cuda0: libnvidia-ml.so.1-not-here not present"),
        "{err}"
    );
    assert!(err.contains("no INA3221/INA238 board rail"), "{err}");
}

#[test]
fn for_cuda_falls_back_to_the_jetson_board_rail() {
    let s = for_cuda_with(&fixture("jetson_orin_jp5"), 0, NO_NVML).unwrap();
    assert_eq!(s.kind(), SensorKind::Ina3221);
    assert_eq!(s.info().rails, ["VDD_IN"]);
    // A library that is not NVML falls back the same way, without a crash.
    let s = for_cuda_with(&fixture("jetson_nano_jp4"), 0, "libc.so.6").unwrap();
    assert_eq!(s.info().rails, ["POM_5V_IN"]);
}

#[test]
fn find_all_lists_rapl_and_boards() {
    let found = find_all_with(&fixture("rapl_intel"), NO_NVML);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].info().kind, "rapl");
    let found = find_all_with(&fixture("jetson_absent_rail"), NO_NVML);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].info().covers, "board");
}

/// On a machine with an NVIDIA driver: reads GPU 0 through NVML for half
/// a second. Elsewhere (this VM) it says it skipped, after checking that
/// no driver is there to read.
#[test]
fn nvml_reads_gpu_0() {
    let s = match nvml::for_index(&nvml::library_name(), 0) {
        Ok(s) => s,
        Err(e) => {
            assert!(
                !Path::new("/dev/nvidiactl").exists(),
                "the NVIDIA driver is here, yet NVML cannot read GPU 0: {e}"
            );
            return crate::skip::skip(format!("needs an NVIDIA GPU and its driver: {e}"));
        }
    };
    println!("{:?}", s.info());
    assert!(s.info().readable, "{:?}", s.info());
    let running = s.start().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let e = running.finish().unwrap();
    println!("{e:?} = {:?} W", e.watts());
    assert!(e.joules > 0.0 && e.seconds >= 0.5, "{e:?}");
    // An idle data-centre GPU draws tens of watts, never kilowatts.
    let w = e.watts().unwrap();
    assert!(w > 1.0 && w < 2000.0, "{e:?}");
}
