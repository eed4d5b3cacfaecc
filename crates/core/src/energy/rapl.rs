//! RAPL (Running Average Power Limit) energy counters through the Linux
//! powercap class: `/sys/class/powercap/intel-rapl:N` (the MSR interface)
//! and `intel-rapl-mmio:N` (the MMIO interface of newer Intel parts). AMD
//! Zen CPUs appear under the same `intel-rapl` names since Linux 5.11.
//!
//! Which domains are added up, and why:
//! - every `package-N` zone: the whole socket (cores, caches, uncore);
//! - the `dram` subzone of a package where present: memory is outside the
//!   package and a model's weights travel through it;
//! - never `core`/`uncore`: they are parts of the package, already counted;
//! - never `psys` together with a package: psys (the whole SoC/platform on
//!   client parts) contains the package. When psys is the only domain, it
//!   is used alone;
//! - the same package seen through MSR and MMIO is counted once, the MSR
//!   one preferred (it is the interface every RAPL-capable kernel has).
//!
//! `enabled` is not looked at: it switches power *limiting*, the energy
//! counter runs either way.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{read_u64, Energy, EnergyError, Sensor, SensorInfo, SensorKind, Source};

/// energy_uj counts in microjoules, so that is the resolution a reading can
/// show. The hardware's own unit is coarser: 2^-16 J ≈ 15.3 µJ on most
/// Intel parts (MSR_RAPL_POWER_UNIT), which the kernel converts to µJ.
pub const RESOLUTION_J: f64 = 1e-6;

/// The powercap class directory, relative to the filesystem root.
const POWERCAP: &str = "sys/class/powercap";

/// One counter: a zone directory with `energy_uj` and `max_energy_range_uj`.
#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    /// "package-0", "dram", "psys".
    pub name: String,
    /// The zone directory, e.g. `<root>/sys/class/powercap/intel-rapl:0`.
    pub dir: PathBuf,
}

impl Domain {
    fn energy_path(&self) -> PathBuf {
        self.dir.join("energy_uj")
    }

    fn read_energy(&self) -> Result<u64, EnergyError> {
        read_u64(&self.energy_path())
    }

    fn read_max_range(&self) -> Result<u64, EnergyError> {
        read_u64(&self.dir.join("max_energy_range_uj"))
    }
}

/// The RAPL domains that together cover the CPU.
#[derive(Debug, Clone)]
pub struct Rapl {
    pub domains: Vec<Domain>,
}

/// A zone found in the powercap tree, before selection.
#[derive(Debug, Clone)]
struct Zone {
    /// "intel-rapl:0", "intel-rapl:0:2", "intel-rapl-mmio:0".
    id: String,
    name: String,
    dir: PathBuf,
}

impl Zone {
    fn is_mmio(&self) -> bool {
        self.id.starts_with("intel-rapl-mmio:")
    }

    /// The parent zone's id for a subzone ("intel-rapl:0" for
    /// "intel-rapl:0:2"), None for a top-level zone.
    fn parent(&self) -> Option<&str> {
        let (prefix, rest) = self.id.split_once(':')?;
        let (parent_n, _) = rest.split_once(':')?;
        Some(&self.id[..prefix.len() + 1 + parent_n.len()])
    }
}

/// The CPU sensor from the RAPL zones under `root`, or None when there are
/// no RAPL zones. A sensor whose counters cannot be read is returned with
/// `readable: false` and the reason.
pub fn find(root: &Path) -> Option<Sensor> {
    let zones = zones(&root.join(POWERCAP));
    let domains = select(&zones);
    if domains.is_empty() {
        return None;
    }
    let rails: Vec<String> = domains.iter().map(|d| d.name.clone()).collect();
    // Reading every counter once now tells detect whether it will work.
    let why_not = domains
        .iter()
        .find_map(|d| d.read_energy().and_then(|_| d.read_max_range()).err());
    let info = SensorInfo {
        name: format!("RAPL {}", rails.join("+")),
        kind: "rapl".to_string(),
        covers: "cpu".to_string(),
        rails,
        // Both set by Sensor::new from why_not.
        readable: false,
        why_not: None,
    };
    Some(Sensor::new(
        info,
        SensorKind::Rapl,
        Vec::new(),
        Source::Rapl(Rapl { domains }),
        why_not,
    ))
}

/// Every RAPL zone under the powercap directory. The live class directory
/// lists subzones flat (`intel-rapl:0:0` beside `intel-rapl:0`) while the
/// device tree nests them inside their parent; both are looked at and a
/// zone id is kept once.
fn zones(powercap: &Path) -> Vec<Zone> {
    let mut found: BTreeMap<String, Zone> = BTreeMap::new();
    for child in visit_zones(powercap, &mut found) {
        visit_zones(&child, &mut found);
    }
    found.into_values().collect()
}

/// Adds the RAPL zones directly inside `dir` to `found`; returns their
/// directories.
fn visit_zones(dir: &Path, found: &mut BTreeMap<String, Zone>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        if !(id.starts_with("intel-rapl:") || id.starts_with("intel-rapl-mmio:")) {
            continue;
        }
        let dir = entry.path();
        let Ok(name) = super::read_text(&dir.join("name")) else {
            continue;
        };
        dirs.push(dir.clone());
        found.entry(id.clone()).or_insert(Zone { id, name, dir });
    }
    dirs
}

/// Picks the domains to add up (see the module comment for the rules).
fn select(zones: &[Zone]) -> Vec<Domain> {
    let top: Vec<&Zone> = zones.iter().filter(|z| z.parent().is_none()).collect();
    let msr_packages: Vec<&str> = top
        .iter()
        .filter(|z| !z.is_mmio() && z.name.starts_with("package-"))
        .map(|z| z.name.as_str())
        .collect();
    let packages: Vec<&Zone> = top
        .iter()
        .copied()
        .filter(|z| z.name.starts_with("package-"))
        // The same package through MMIO as through MSR: count it once.
        .filter(|z| !(z.is_mmio() && msr_packages.contains(&z.name.as_str())))
        .collect();

    let mut chosen = Vec::new();
    for package in &packages {
        chosen.push(Domain {
            name: package.name.clone(),
            dir: package.dir.clone(),
        });
        for sub in zones
            .iter()
            .filter(|z| z.parent() == Some(package.id.as_str()) && z.name == "dram")
        {
            chosen.push(Domain {
                name: sub.name.clone(),
                dir: sub.dir.clone(),
            });
        }
    }
    // Some servers expose dram as a top-level zone of its own.
    for dram in top.iter().filter(|z| z.name == "dram" && !z.is_mmio()) {
        chosen.push(Domain {
            name: dram.name.clone(),
            dir: dram.dir.clone(),
        });
    }
    if packages.is_empty() {
        // psys alone: it contains the package, so it covers the CPU.
        if let Some(psys) = top.iter().find(|z| z.name == "psys") {
            chosen.push(Domain {
                name: psys.name.clone(),
                dir: psys.dir.clone(),
            });
        }
    }
    chosen
}

/// The energy a counter advanced by, in µJ. The counter wraps to 0 after
/// `max_range` (max_energy_range_uj): then the distance is
/// `end + max_range - start`. A run that uses more than a whole range
/// (e.g. 262 kJ, over an hour at 60 W; some parts have a 65 kJ range,
/// about 18 min) cannot be told apart from a shorter one.
pub fn counter_delta(start: u64, end: u64, max_range: u64) -> u64 {
    if end >= start {
        end - start
    } else {
        end.saturating_add(max_range).saturating_sub(start)
    }
}

impl Rapl {
    /// Reads every counter now.
    pub fn start(&self) -> Result<RaplRunning, EnergyError> {
        let mut readings = Vec::with_capacity(self.domains.len());
        for d in &self.domains {
            readings.push((d.clone(), d.read_max_range()?, d.read_energy()?));
        }
        Ok(RaplRunning {
            started: Instant::now(),
            readings,
        })
    }
}

/// Counters read at start: (domain, max_energy_range_uj, energy_uj).
#[derive(Debug)]
pub struct RaplRunning {
    started: Instant,
    readings: Vec<(Domain, u64, u64)>,
}

impl RaplRunning {
    /// Reads every counter again and adds up how far each advanced.
    pub fn finish(self) -> Result<Energy, EnergyError> {
        let mut micro = 0u64;
        for (domain, max_range, start) in &self.readings {
            let end = domain.read_energy()?;
            micro += counter_delta(*start, end, *max_range);
        }
        Ok(Energy {
            joules: micro as f64 * RESOLUTION_J,
            seconds: self.started.elapsed().as_secs_f64(),
            samples: 2,
            sampling_hz: None,
            resolution_j: Some(RESOLUTION_J),
        })
    }
}
