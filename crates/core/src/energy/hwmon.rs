//! The power monitors on NVIDIA Jetson boards: TI INA3221 (three
//! channels; every Jetson from the Nano/TX2 to Orin) and INA238 (one
//! channel), which measure the voltage and current of the board's supply
//! rails.
//!
//! Two driver layouts:
//! - JetPack 5 and later, the mainline `ina3221`/`ina238` hwmon drivers:
//!   `/sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmonN/` (the same
//!   directory as `/sys/class/hwmon/hwmonN`) with `name`, `in{N}_label`
//!   (the rail, from the device tree), `in{N}_input` (bus voltage, mV) and
//!   `curr{N}_input` (mA); INA238 also has `power1_input` (µW);
//! - JetPack 4, NVIDIA's downstream `ina3221x` iio driver:
//!   `/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:deviceN/` with
//!   `rail_name_{N}`, `in_power{N}_input` (mW), `in_voltage{N}_input` (mV)
//!   and `in_current{N}_input` (mA).
//!
//! The chips give power now, not energy: [`Board::start`] samples the rails
//! in a thread (see [`super::sampler`]) and integrates.
//!
//! Which rails are added up: the board's input rail (`VDD_IN` on Orin
//! Nano/NX and Xavier NX, `POM_5V_IN` on the Nano, `VIN`), case-insensitive,
//! when there is one, alone: it already contains every other rail, and
//! adding its parts would count them twice. Without it (AGX Orin names its
//! rails VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, ...) every rail is added up;
//! that misses what is not behind a monitored rail, which `rails` makes
//! visible.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::sampler::{self, Sampler};
use super::{read_text, EnergyError, Sensor, SensorInfo, SensorKind, Source};

/// Rail names that mean "the whole board's input", compared
/// case-insensitively.
pub const TOTAL_RAILS: [&str; 3] = ["VDD_IN", "POM_5V_IN", "VIN"];

/// One supply rail and where its power is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Rail {
    /// The rail's name from the device tree, e.g. "VDD_IN".
    pub name: String,
    /// "ina3221" or "ina238".
    pub chip: &'static str,
    /// The chip's I2C address ("1-0040") or hwmon name ("hwmon3").
    pub chip_id: String,
    reading: Reading,
}

#[derive(Debug, Clone, PartialEq)]
enum Reading {
    /// Voltage (mV) and current (mA) files: W = mV × mA / 1e6.
    VoltsAmps { mv: PathBuf, ma: PathBuf },
    /// A power file in µW (INA238 hwmon `power1_input`).
    MicroWatts(PathBuf),
    /// A power file in mW (JetPack 4 iio `in_power{N}_input`).
    MilliWatts(PathBuf),
}

impl Rail {
    /// The rail's power now, in watts.
    pub fn watts(&self) -> Result<f64, EnergyError> {
        match &self.reading {
            Reading::VoltsAmps { mv, ma } => Ok(read_number(mv)? * read_number(ma)? / 1e6),
            Reading::MicroWatts(p) => Ok(read_number(p)? / 1e6),
            Reading::MilliWatts(p) => Ok(read_number(p)? / 1e3),
        }
    }
}

/// A sysfs value as a number. Signed: a current can read slightly
/// negative around zero.
fn read_number(path: &Path) -> Result<f64, EnergyError> {
    let text = read_text(path).map_err(|e| EnergyError::reading(path, e))?;
    text.parse::<i64>()
        .map(|v| v as f64)
        .map_err(|_| EnergyError::RailNotANumber {
            path: path.to_path_buf(),
            text,
        })
}

/// The rails whose power is added up for the board.
#[derive(Debug, Clone)]
pub struct Board {
    pub rails: Vec<Rail>,
}

impl Board {
    /// The summed power of the chosen rails, in watts.
    pub fn watts(&self) -> Result<f64, EnergyError> {
        self.rails.iter().map(Rail::watts).sum()
    }

    /// Starts sampling the chosen rails.
    pub fn start(&self) -> Result<Sampler, EnergyError> {
        let board = self.clone();
        sampler::spawn(sampler::PERIOD, move || board.watts())
    }
}

/// Every rail found under `root`, and notes on the ones skipped.
pub fn rails(root: &Path) -> (Vec<Rail>, Vec<String>) {
    let mut rails = Vec::new();
    let mut notes = Vec::new();
    for dir in hwmon_dirs(root) {
        hwmon_rails(&dir, &mut rails, &mut notes);
    }
    for dir in iio_dirs(root) {
        iio_rails(&dir, &mut rails, &mut notes);
    }
    (rails, notes)
}

/// The rails to add up: the total rail alone when there is one, else all.
pub fn choose(rails: &[Rail]) -> Vec<Rail> {
    let is_total = |r: &&Rail| TOTAL_RAILS.iter().any(|t| r.name.eq_ignore_ascii_case(t));
    match rails.iter().find(is_total) {
        Some(total) => vec![total.clone()],
        None => rails.to_vec(),
    }
}

/// The Jetson board sensor under `root`, or None when there is no
/// INA3221/INA238.
pub fn find(root: &Path) -> Option<Sensor> {
    let chips_present = !hwmon_dirs(root).is_empty() || !iio_dirs(root).is_empty();
    if !chips_present {
        return None;
    }
    let (all, notes) = rails(root);
    for note in &notes {
        log::info!("{note}");
    }
    let chosen = choose(&all);
    let names: Vec<String> = chosen.iter().map(|r| r.name.clone()).collect();
    let chips: BTreeSet<String> = chosen
        .iter()
        .map(|r| format!("{} {}", r.chip, r.chip_id))
        .collect();
    let kind = chosen.first().map_or("ina3221", |r| r.chip);
    let why_not = chosen.is_empty().then(|| EnergyError::NoRail {
        notes: notes.clone(),
    });
    let what = match chosen.len() {
        1 => names[0].clone(),
        n => format!("sum of {n} rails"),
    };
    let chips: Vec<String> = chips.into_iter().collect();
    let info = SensorInfo {
        name: format!("Jetson {what} ({})", chips.join(", ")),
        kind: kind.to_string(),
        covers: "board".to_string(),
        rails: names,
        // Both set by Sensor::new from why_not.
        readable: false,
        why_not: None,
    };
    Some(Sensor::new(
        info,
        SensorKind::Ina3221,
        notes,
        Source::Board(Board { rails: chosen }),
        why_not,
    ))
}

/// hwmon directories of INA3221/INA238 chips, each once: the class
/// directory and the driver's I2C devices lead to the same place.
fn hwmon_dirs(root: &Path) -> Vec<PathBuf> {
    let mut candidates = subdirs(&root.join("sys/class/hwmon"), "hwmon");
    for driver in ["ina3221", "ina238"] {
        for dev in subdirs(&root.join("sys/bus/i2c/drivers").join(driver), "") {
            candidates.extend(subdirs(&dev.join("hwmon"), "hwmon"));
        }
    }
    let mut seen = BTreeSet::new();
    candidates
        .into_iter()
        .filter(|d| chip_kind(d).is_some())
        .filter(|d| seen.insert(fs::canonicalize(d).unwrap_or_else(|_| d.clone())))
        .collect()
}

/// JetPack 4's iio directories of the ina3221x driver.
fn iio_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dev in subdirs(&root.join("sys/bus/i2c/drivers/ina3221x"), "") {
        dirs.extend(subdirs(&dev, "iio:device"));
    }
    dirs
}

/// The subdirectories of `dir` whose names start with `prefix`, sorted.
fn subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn chip_kind(hwmon: &Path) -> Option<&'static str> {
    match read_text(&hwmon.join("name")).ok()?.as_str() {
        "ina3221" => Some("ina3221"),
        "ina238" => Some("ina238"),
        _ => None,
    }
}

/// "1-0040" for `.../1-0040/hwmon/hwmon1`, else the hwmon name.
fn chip_id(hwmon: &Path) -> String {
    let real = fs::canonicalize(hwmon).unwrap_or_else(|_| hwmon.to_path_buf());
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    let parent = real.parent();
    // /sys/class/hwmon/hwmonN itself also sits in a directory named hwmon.
    if name(parent).as_deref() == Some("hwmon") {
        if let Some(dev) = name(parent.and_then(Path::parent)).filter(|d| d != "class") {
            return dev;
        }
    }
    name(Some(&real)).unwrap_or_else(|| "hwmon".to_string())
}

/// Checks that a rail can be read now; otherwise notes why it is skipped.
fn keep(rail: Rail, rails: &mut Vec<Rail>, notes: &mut Vec<String>) {
    match rail.watts() {
        Ok(_) => rails.push(rail),
        Err(e) => notes.push(format!(
            "energy: rail {} of {} {} skipped: {e}",
            rail.name, rail.chip, rail.chip_id
        )),
    }
}

/// "NC" is what NVIDIA's device trees call a channel with nothing on it.
fn not_connected(label: &str, chip: &str, id: &str, notes: &mut Vec<String>) -> bool {
    let nc = label.eq_ignore_ascii_case("NC");
    if nc {
        notes.push(format!(
            "energy: a channel of {chip} {id} is labelled NC (not connected), skipped"
        ));
    }
    nc
}

fn hwmon_rails(dir: &Path, rails: &mut Vec<Rail>, notes: &mut Vec<String>) {
    let Some(chip) = chip_kind(dir) else { return };
    let id = chip_id(dir);
    // INA3221: channels 1-3 carry the rails (in4-6 are shunt voltages, in7
    // their sum); INA238: one channel, in1 (in0 is its shunt voltage).
    let channels = if chip == "ina238" { 1..=1 } else { 1..=3 };
    for n in channels {
        let label = read_text(&dir.join(format!("in{n}_label"))).ok();
        let mv = dir.join(format!("in{n}_input"));
        let ma = dir.join(format!("curr{n}_input"));
        let uw = dir.join(format!("power{n}_input"));
        let name = match label {
            Some(l) if not_connected(&l, chip, &id, notes) => continue,
            Some(l) => l,
            // The ina3221 driver hides the label of a channel the device
            // tree does not describe: that channel is not a board rail.
            None if chip == "ina3221" => continue,
            // INA238 hwmon has no per-channel label; the device tree's
            // `label` property becomes the hwmon `label` file.
            None => read_text(&dir.join("label")).unwrap_or_else(|_| format!("{chip} {id}")),
        };
        let reading = if chip == "ina238" && uw.exists() {
            Reading::MicroWatts(uw)
        } else {
            Reading::VoltsAmps { mv, ma }
        };
        let rail = Rail {
            name,
            chip,
            chip_id: id.clone(),
            reading,
        };
        keep(rail, rails, notes);
    }
}

fn iio_rails(dir: &Path, rails: &mut Vec<Rail>, notes: &mut Vec<String>) {
    let id = dir.parent().and_then(Path::file_name).map_or_else(
        || "ina3221x".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    for n in 0..3 {
        let Ok(name) = read_text(&dir.join(format!("rail_name_{n}"))) else {
            continue;
        };
        if not_connected(&name, "ina3221", &id, notes) {
            continue;
        }
        let mw = dir.join(format!("in_power{n}_input"));
        let reading = if mw.exists() {
            Reading::MilliWatts(mw)
        } else {
            Reading::VoltsAmps {
                mv: dir.join(format!("in_voltage{n}_input")),
                ma: dir.join(format!("in_current{n}_input")),
            }
        };
        let rail = Rail {
            name,
            chip: "ina3221",
            chip_id: id.clone(),
            reading,
        };
        keep(rail, rails, notes);
    }
}
