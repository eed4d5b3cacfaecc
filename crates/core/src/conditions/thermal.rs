//! The CPU clock, the thermal zones and a Raspberry Pi's firmware
//! throttling flags, read from sysfs before and after a precision is timed
//! (Documentation/admin-guide/pm/cpufreq.rst, cpufreq-stats.rst,
//! Documentation/driver-api/thermal/sysfs-api.rst).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One reading of the clock, the zones and the firmware's flags.
#[derive(Debug, Clone, Default)]
pub struct ThermalSnapshot {
    /// The lowest current clock of the CPUs read, kHz, and the file it came from.
    pub clock_khz: Option<(u64, &'static str)>,
    /// cpufreq/stats/time_in_state summed over the CPUs: kHz -> 10 ms units.
    pub time_in_state: BTreeMap<u64, u64>,
    pub zones: Vec<ZoneReading>,
    /// get_throttled of the Raspberry Pi firmware driver.
    pub firmware_throttled: Option<u32>,
    /// What could not be read here, in words.
    pub not_read: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneReading {
    /// thermal_zoneN
    pub zone: String,
    /// The zone's `type` (for example "cpu-thermal", "x86_pkg_temp").
    pub kind: String,
    /// Millidegrees Celsius; absent when the read failed (ENODATA happens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millicelsius: Option<i64>,
    /// The lowest passive (else any) trip point, millidegrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip_millicelsius: Option<i64>,
}

/// Firmware throttling bits (the Pi's `vcgencmd get_throttled` bits 0-3):
/// what each means, for the report.
const FIRMWARE_FLAGS: [(u32, &str); 4] = [
    (1 << 0, "under-voltage"),
    (1 << 1, "arm frequency capped"),
    (1 << 2, "throttled"),
    (1 << 3, "soft temperature limit"),
];

/// Where the Raspberry Pi firmware driver exposes its throttling flags.
const PI_THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";

impl ThermalSnapshot {
    /// Reads under `root` (default "/") for the CPUs in `cpus` (None: all).
    pub fn take(root: &Path, cpus: Option<&[usize]>) -> ThermalSnapshot {
        let mut snap = ThermalSnapshot::default();
        let cpu_dir = root.join("sys/devices/system/cpu");
        let mut any_cpufreq = false;
        for (index, dir) in numbered(&cpu_dir, "cpu") {
            if cpus.is_some_and(|set| !set.contains(&index)) {
                continue;
            }
            let freq = dir.join("cpufreq");
            if !freq.is_dir() {
                continue;
            }
            any_cpufreq = true;
            // cpuinfo_cur_freq is the hardware's word but often root-only.
            let clock = ["cpuinfo_cur_freq", "scaling_cur_freq"]
                .into_iter()
                .find_map(|name| Some((read_number(&freq.join(name))? as u64, name)));
            if let Some((khz, name)) = clock {
                if snap.clock_khz.is_none_or(|(low, _)| khz < low) {
                    snap.clock_khz = Some((khz, name));
                }
            }
            if let Ok(text) = std::fs::read_to_string(freq.join("stats/time_in_state")) {
                for line in text.lines() {
                    let mut f = line.split_whitespace().map(|v| v.parse::<u64>());
                    if let (Some(Ok(khz)), Some(Ok(units))) = (f.next(), f.next()) {
                        *snap.time_in_state.entry(khz).or_default() += units;
                    }
                }
            }
        }
        if !any_cpufreq {
            snap.not_read.push(format!(
                "CPU clock: not available here (no cpufreq in {})",
                cpu_dir.display()
            ));
        }
        let thermal_dir = root.join("sys/class/thermal");
        for (index, dir) in numbered(&thermal_dir, "thermal_zone") {
            snap.zones.push(ZoneReading {
                zone: format!("thermal_zone{index}"),
                kind: std::fs::read_to_string(dir.join("type"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
                millicelsius: read_number(&dir.join("temp")),
                trip_millicelsius: lowest_trip(&dir),
            });
        }
        if snap.zones.is_empty() {
            snap.not_read.push(format!(
                "thermal zones: not available here (none in {})",
                thermal_dir.display()
            ));
        }
        let pi = root.join(PI_THROTTLED);
        match std::fs::read_to_string(&pi) {
            Ok(text) => {
                let hex = text.trim().trim_start_matches("0x");
                snap.firmware_throttled = u32::from_str_radix(hex, 16).ok();
            }
            Err(_) => snap.not_read.push(format!(
                "firmware throttling flags: not read (no {}, which only a Raspberry Pi kernel has)",
                pi.display()
            )),
        }
        snap
    }
}

/// The lowest trip point of a zone: passive ones first (where the kernel
/// starts to slow the clock), else any.
fn lowest_trip(zone: &Path) -> Option<i64> {
    let mut passive = None::<i64>;
    let mut any = None::<i64>;
    for n in 0.. {
        let Some(temp) = read_number(&zone.join(format!("trip_point_{n}_temp"))) else {
            break;
        };
        let kind =
            std::fs::read_to_string(zone.join(format!("trip_point_{n}_type"))).unwrap_or_default();
        if kind.trim() == "passive" {
            passive = Some(passive.map_or(temp, |p| p.min(temp)));
        }
        any = Some(any.map_or(temp, |a| a.min(temp)));
    }
    passive.or(any)
}

/// `prefixN` entries of `dir`, by N.
fn numbered(dir: &Path, prefix: &str) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// A file holding one integer; None when it is missing, unreadable
/// (a thermal zone's temp may fail with ENODATA) or not a number.
fn read_number(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The clock and heat over one timed precision, as the report holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Lowest current CPU clock before and after, kHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_khz_before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_khz_after: Option<u64>,
    /// cpuinfo_cur_freq or scaling_cur_freq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_source: Option<String>,
    /// The lowest clock that cpufreq's time_in_state saw used in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_khz_lowest_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones_before: Vec<ZoneReading>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones_after: Vec<ZoneReading>,
    /// The Raspberry Pi firmware's get_throttled after, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_flags: Option<String>,
    /// What is not available here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_available: Vec<String>,
}

impl Throttling {
    pub fn between(before: &ThermalSnapshot, after: &ThermalSnapshot) -> Throttling {
        let lowest_used = after
            .time_in_state
            .iter()
            .filter(|(khz, units)| **units > before.time_in_state.get(khz).copied().unwrap_or(0))
            .map(|(khz, _)| *khz)
            .min();
        Throttling {
            clock_khz_before: before.clock_khz.map(|c| c.0),
            clock_khz_after: after.clock_khz.map(|c| c.0),
            clock_source: after.clock_khz.map(|c| c.1.to_owned()),
            clock_khz_lowest_used: lowest_used,
            zones_before: before.zones.clone(),
            zones_after: after.zones.clone(),
            firmware_flags: after.firmware_throttled.map(firmware_words),
            not_available: after.not_read.clone(),
        }
    }

    /// Why the clock or the heat spoil this timing, in words; empty when
    /// they do not. `max_clock_drop`: share the clock may fall by.
    pub fn problems(&self, max_clock_drop: f64) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(before) = self.clock_khz_before.filter(|&b| b > 0) {
            let low = [self.clock_khz_after, self.clock_khz_lowest_used]
                .into_iter()
                .flatten()
                .min();
            if let Some(low) = low {
                let drop = 1.0 - low as f64 / before as f64;
                if drop > max_clock_drop {
                    why.push(format!(
                        "the CPU clock fell from {} MHz to {} MHz ({:.0}% down, more than {:.0}%)",
                        before / 1000,
                        low / 1000,
                        drop * 100.0,
                        max_clock_drop * 100.0
                    ));
                }
            }
        }
        for zone in self.zones_before.iter().chain(&self.zones_after) {
            if let (Some(t), Some(trip)) = (zone.millicelsius, zone.trip_millicelsius) {
                if t >= trip && !why.iter().any(|w| w.contains(&zone.zone)) {
                    why.push(format!(
                        "{} ({}) reached {:.1} °C, at or past its trip point {:.1} °C",
                        zone.zone,
                        zone.kind,
                        t as f64 / 1000.0,
                        trip as f64 / 1000.0
                    ));
                }
            }
        }
        if let Some(flags) = &self.firmware_flags {
            if flags != "none" {
                why.push(format!("the Raspberry Pi firmware reports: {flags}"));
            }
        }
        why
    }
}

/// get_throttled's current bits in words ("none" when clear).
fn firmware_words(bits: u32) -> String {
    let words: Vec<&str> = FIRMWARE_FLAGS
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, word)| *word)
        .collect();
    if words.is_empty() {
        "none".into()
    } else {
        format!("{} (0x{bits:x})", words.join(", "))
    }
}
