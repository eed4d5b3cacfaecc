//! Why energy could not be read: no sensor covers the device, or the one
//! that does cannot be read (permission, a rail with nothing connected,
//! NVML failing). Each message says what to do where there is something to
//! do; the report's `not_read` and `why_not` carry it.

use std::path::PathBuf;
use std::sync::Arc;

use super::nvml::LIBRARY_ENV;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EnergyError {
    /// Nothing on this machine measures the CPU's energy.
    #[error("no energy sensor found (no RAPL powercap zones, no INA3221/INA238 hwmon)")]
    NoSensor,
    /// Neither NVML nor a Jetson board rail covers CUDA device `index`.
    #[error("no energy sensor for cuda{index}: {nvml}; {}", board_rail(board.as_deref()))]
    NoCudaSensor {
        index: usize,
        /// Why NVML could not.
        nvml: Box<EnergyError>,
        /// Why the board rail could not; None when there is none.
        board: Option<Box<EnergyError>>,
    },
    /// A sensor's file is root-only: RAPL's energy_uj is mode 0400 since
    /// Linux 5.10 (the PLATYPUS power side channel, CVE-2020-8694).
    #[error(
        "energy: not readable (permission): {} is root-only since Linux 5.10; install the rule \
         precisiond ships, which gives its group read access \
         (/usr/lib/tmpfiles.d/precisiond.conf, applied with `systemd-tmpfiles --create \
         /usr/lib/tmpfiles.d/precisiond.conf`), and add yourself to the precisiond group, or run \
         as root; see the README's \"Energy per inference\"",
        path.display()
    )]
    Permission { path: PathBuf },
    #[error("energy: cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: Arc<std::io::Error>,
    },
    /// A counter file that does not hold a number.
    #[error("energy: {} holds {text:?}, not a number", path.display())]
    NotANumber { path: PathBuf, text: String },
    /// A power monitor channel that does not hold a number.
    #[error(
        "energy: {} holds {text:?}, not a number (a channel with nothing connected?)",
        path.display()
    )]
    RailNotANumber { path: PathBuf, text: String },
    /// INA3221/INA238 chips whose rails all failed; the notes say how.
    #[error(
        "energy: INA3221/INA238 found but no rail could be read ({})",
        notes.join("; ")
    )]
    NoRail { notes: Vec<String> },
    #[error("energy: cannot start the sampling thread: {0}")]
    SamplerThread(Arc<std::io::Error>),
    #[error("energy: the sampling thread panicked")]
    SamplerPanicked,
    #[error(transparent)]
    Nvml(#[from] NvmlError),
}

/// The board-rail half of [`EnergyError::NoCudaSensor`].
fn board_rail(board: Option<&EnergyError>) -> String {
    match board {
        Some(why) => format!("Jetson board rail: {why}"),
        None => "no INA3221/INA238 board rail either".to_owned(),
    }
}

impl EnergyError {
    /// A failed read of `path`, told apart by what to do about it.
    pub(super) fn reading(path: &std::path::Path, error: std::io::Error) -> EnergyError {
        if error.kind() == std::io::ErrorKind::PermissionDenied {
            EnergyError::Permission {
                path: path.to_path_buf(),
            }
        } else {
            EnergyError::Read {
                path: path.to_path_buf(),
                error: Arc::new(error),
            }
        }
    }
}

/// What NVML (`libnvidia-ml.so.1`) said or lacked. `why` fields are
/// NVML's own description of its return code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NvmlError {
    #[error(
        "{library} not present (no NVIDIA driver with NVML; set {env} to its path if it is \
         installed elsewhere)",
        env = LIBRARY_ENV
    )]
    NotPresent { library: String },
    #[error("{library} lacks {symbol}: not a usable NVML library")]
    NotNvml {
        library: String,
        symbol: &'static str,
    },
    #[error("{library} lacks nvmlDeviceGetHandleByPciBusId_v2")]
    NoPciLookup { library: String },
    /// An NVML call that failed: `call` names it with its arguments.
    #[error("{call} failed: {why}")]
    Call { call: String, why: String },
    #[error("bad PCI id {0:?}")]
    BadPciId(String),
    #[error("no GPU {0}")]
    NoGpu(usize),
    #[error("CUDA lists {count} GPU(s), none with index {index}")]
    NotInCuda { count: usize, index: u32 },
    #[error("NVML lists {count} GPU(s), none with index {index}")]
    NotInNvml { count: u32, index: u32 },
    #[error("energy: GPU {index} reports neither total energy nor power through NVML ({why})")]
    NoReading { index: u32, why: String },
    #[error("energy: nvmlDeviceGetTotalEnergyConsumption failed for GPU {index}: {why}")]
    EnergyCounter { index: u32, why: String },
    #[error("energy: nvmlDeviceGetPowerUsage failed for GPU {index}: {why}")]
    Power { index: u32, why: String },
    #[error("energy: GPU {0} has no NVML reading")]
    NoMethod(u32),
    #[error("energy: GPU {0}'s energy counter went backwards (driver reloaded?); measure again")]
    Backwards(u32),
}
