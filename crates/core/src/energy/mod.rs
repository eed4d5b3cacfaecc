//! Energy sensors: how much energy a piece of work took, next to how long
//! it took.
//!
//! Three kinds of sensor, one module each:
//! - [`rapl`]: the CPU package counters of x86 machines (Intel, and AMD
//!   Zen since Linux 5.11) in `/sys/class/powercap`;
//! - [`hwmon`]: the INA3221 (and INA238) power monitors on NVIDIA Jetson
//!   boards, through hwmon (JetPack 5+) or iio (JetPack 4);
//! - [`nvml`]: a discrete NVIDIA GPU's own energy counter through
//!   `libnvidia-ml.so.1`, loaded at run time.
//!
//! Counters (RAPL, NVML's total energy) are read at [`Sensor::start`] and
//! at [`Running::finish`]; instantaneous power readings (INA3221, NVML's
//! power usage on GPUs without the counter) are sampled by a thread
//! ([`sampler`]) and integrated.
//!
//! Every reader takes a filesystem root (`/` on a live system) so that the
//! tests can pass a recorded tree under `tests/fixtures/energy/`; the build
//! machine has no energy sensor at all.

mod error;
pub mod hwmon;
pub mod nvml;
pub mod rapl;
mod sampler;

pub use error::{EnergyError, NvmlError};

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The kinds of sensor this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    Rapl,
    /// INA3221 or INA238 on a Jetson board (through hwmon or iio).
    Ina3221,
    Nvml,
}

/// What `precisiond detect` lists and a report names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// E.g. "RAPL package-0+dram", "Jetson ina3221 1-0040", "NVML cuda0".
    pub name: String,
    /// "rapl", "ina3221", "ina238" or "nvml".
    pub kind: String,
    /// What the reading covers: "cpu", "cuda0", "board".
    pub covers: String,
    /// The domains or rails whose readings are added up.
    pub rails: Vec<String>,
    pub readable: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub why_not: Option<String>,
}

/// One way to measure the energy of something.
#[derive(Debug)]
pub struct Sensor {
    info: SensorInfo,
    kind: SensorKind,
    /// Things worth knowing that do not make the sensor unusable, e.g. a
    /// rail skipped because its channel is not connected.
    notes: Vec<String>,
    source: Source,
    /// Why it cannot be read (`info.why_not` in words), None when it can.
    why_not: Option<EnergyError>,
}

#[derive(Debug)]
enum Source {
    Rapl(rapl::Rapl),
    Board(hwmon::Board),
    Nvml(nvml::NvmlDevice),
}

impl Sensor {
    /// A sensor described by `info` (whose `readable` and `why_not` are
    /// set here from `why_not`).
    fn new(
        mut info: SensorInfo,
        kind: SensorKind,
        notes: Vec<String>,
        source: Source,
        why_not: Option<EnergyError>,
    ) -> Sensor {
        info.readable = why_not.is_none();
        info.why_not = why_not.as_ref().map(ToString::to_string);
        Sensor {
            info,
            kind,
            notes,
            source,
            why_not,
        }
    }

    pub fn info(&self) -> SensorInfo {
        self.info.clone()
    }

    pub fn kind(&self) -> SensorKind {
        self.kind
    }

    /// Rails or domains left out, and why (also logged at discovery).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Reads the counters now, or starts the sampling thread. Fails when
    /// the sensor is not readable (the message says why and what to do).
    pub fn start(&self) -> Result<Running, EnergyError> {
        if let Some(why) = &self.why_not {
            return Err(why.clone());
        }
        let inner = match &self.source {
            Source::Rapl(r) => RunningInner::Rapl(r.start()?),
            Source::Board(b) => RunningInner::Sampled(b.start()?),
            Source::Nvml(n) => n.start()?,
        };
        Ok(Running { inner })
    }
}

/// A measurement in progress; [`Running::finish`] ends it.
#[derive(Debug)]
pub struct Running {
    inner: RunningInner,
}

#[derive(Debug)]
enum RunningInner {
    Rapl(rapl::RaplRunning),
    Sampled(sampler::Sampler),
    NvmlCounter(nvml::CounterRunning),
}

impl Running {
    /// Reads the counters again, or stops the sampling thread, and returns
    /// the energy used since [`Sensor::start`].
    pub fn finish(self) -> Result<Energy, EnergyError> {
        match self.inner {
            RunningInner::Rapl(r) => r.finish(),
            RunningInner::Sampled(s) => s.finish(),
            RunningInner::NvmlCounter(c) => c.finish(),
        }
    }
}

/// The energy used between [`Sensor::start`] and [`Running::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Energy {
    pub joules: f64,
    pub seconds: f64,
    /// Readings taken: 2 for counters (start and end), the number of power
    /// samples for sampled sensors.
    pub samples: u64,
    /// Hz for sampled sensors, None for counters.
    pub sampling_hz: Option<f64>,
    /// The counter's resolution in joules (counters) or None.
    pub resolution_j: Option<f64>,
}

impl Energy {
    /// Average power over the measurement, in watts.
    pub fn watts(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.joules / self.seconds)
    }
}

/// Every sensor found under `root`, readable or not (for detect), plus the
/// NVIDIA GPUs that `libnvidia-ml.so.1` (or `PRECISIOND_NVML_LIB`) lists.
/// Where the sensors' files are: `/`, or a recorded tree named by
/// `PRECISIOND_SYSFS_ROOT` (for the tests: the project's build machine has
/// no energy sensor).
pub fn sysfs_root() -> std::path::PathBuf {
    std::env::var_os("PRECISIOND_SYSFS_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/"))
}

pub fn find_all(root: &Path) -> Vec<Sensor> {
    find_all_with(root, &nvml::library_name())
}

fn find_all_with(root: &Path, nvml_library: &str) -> Vec<Sensor> {
    let mut all = Vec::new();
    all.extend(rapl::find(root));
    all.extend(hwmon::find(root));
    all.extend(nvml::find_all(nvml_library));
    all
}

/// The sensor whose reading covers work on the CPU: RAPL packages (+dram),
/// else a Jetson board's total rail (or the sum of its rails).
pub fn for_cpu(root: &Path) -> Result<Sensor, EnergyError> {
    let rapl_why = match rapl::find(root) {
        Some(s) => match s.why_not {
            None => return Ok(s),
            why => why,
        },
        None => None,
    };
    let board_why = match hwmon::find(root) {
        Some(s) => match s.why_not {
            None => return Ok(s),
            why => why,
        },
        None => None,
    };
    Err(rapl_why.or(board_why).unwrap_or(EnergyError::NoSensor))
}

/// The sensor for CUDA device `index`: NVML, else the Jetson board rail.
pub fn for_cuda(root: &Path, index: usize) -> Result<Sensor, EnergyError> {
    for_cuda_with(root, index, &nvml::library_name())
}

fn for_cuda_with(root: &Path, index: usize, nvml_library: &str) -> Result<Sensor, EnergyError> {
    let nvml_why = match nvml::for_index(nvml_library, index) {
        Ok(s) => match s.why_not {
            None => return Ok(s),
            Some(why) => why,
        },
        Err(e) => e.into(),
    };
    // A Jetson's iGPU has no NVML energy reading; its board rail covers it.
    let board = match hwmon::find(root) {
        Some(s) => match s.why_not {
            None => return Ok(s),
            Some(why) => Some(Box::new(why)),
        },
        None => None,
    };
    Err(EnergyError::NoCudaSensor {
        index,
        nvml: Box::new(nvml_why),
        board,
    })
}

/// Reads a sysfs file as trimmed text.
fn read_text(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string())
}

/// Reads a sysfs file holding one integer.
fn read_u64(path: &Path) -> Result<u64, EnergyError> {
    let text = read_text(path).map_err(|e| EnergyError::reading(path, e))?;
    text.parse().map_err(|_| EnergyError::NotANumber {
        path: path.to_path_buf(),
        text,
    })
}

#[cfg(test)]
mod tests;
