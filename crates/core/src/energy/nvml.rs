//! A discrete NVIDIA GPU's energy through NVML (`libnvidia-ml.so.1`, which
//! the driver installs), loaded with `dlopen` at run time like libcuda in
//! [`crate::hardware::cuda`], so the binary runs on machines without it.
//!
//! `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded;
//! Volta and newer) is read at start and finish. Older GPUs answer
//! NVML_ERROR_NOT_SUPPORTED; then `nvmlDeviceGetPowerUsage` (mW) is sampled
//! and integrated like a Jetson rail. On recent GPUs that power figure is
//! itself averaged over about a second by the driver, so short runs
//! measured that way are smeared.
//!
//! Jetson iGPUs have no NVML energy reading; [`super::for_cuda`] falls back
//! to the board rail there.

use std::ffi::{c_char, c_uint, c_ulonglong, c_void, CStr};
use std::sync::Arc;
use std::time::Instant;

use libloading::{Library, Symbol};

use super::sampler::{self, Sampler};
use super::{Energy, EnergyError, NvmlError, RunningInner, Sensor, SensorInfo, SensorKind, Source};

/// The soname the NVIDIA driver installs.
pub const LIBNVML: &str = "libnvidia-ml.so.1";

/// Names another NVML library (a path), e.g. for a driver installed outside
/// the loader's path, or for tests.
pub const LIBRARY_ENV: &str = "PRECISIOND_NVML_LIB";

/// The energy counter counts millijoules.
pub const RESOLUTION_J: f64 = 1e-3;

const NVML_SUCCESS: c_uint = 0;
const NVML_ERROR_NOT_SUPPORTED: c_uint = 3;

type RawDevice = *mut c_void;
type NvmlInit = unsafe extern "C" fn() -> c_uint;
type NvmlShutdown = unsafe extern "C" fn() -> c_uint;
type NvmlGetCount = unsafe extern "C" fn(*mut c_uint) -> c_uint;
type NvmlGetHandle = unsafe extern "C" fn(c_uint, *mut RawDevice) -> c_uint;
type NvmlGetHandleByPci = unsafe extern "C" fn(*const c_char, *mut RawDevice) -> c_uint;
type NvmlGetEnergy = unsafe extern "C" fn(RawDevice, *mut c_ulonglong) -> c_uint;
type NvmlGetPower = unsafe extern "C" fn(RawDevice, *mut c_uint) -> c_uint;
type NvmlErrorString = unsafe extern "C" fn(c_uint) -> *const c_char;

/// The NVML library to load: `PRECISIOND_NVML_LIB` when set, else
/// `libnvidia-ml.so.1`.
pub fn library_name() -> String {
    library_from_env(std::env::var_os(LIBRARY_ENV))
}

fn library_from_env(value: Option<std::ffi::OsString>) -> String {
    value
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| LIBNVML.to_string())
}

/// A loaded, initialised NVML; shut down when the last user drops it.
struct Nvml {
    library: String,
    // Function pointers copied out of `lib`, which outlives them (it is
    // dropped last, after `Drop::drop` has called nvmlShutdown).
    shutdown: NvmlShutdown,
    get_count: NvmlGetCount,
    get_handle: NvmlGetHandle,
    get_handle_by_pci: Option<NvmlGetHandleByPci>,
    get_energy: Option<NvmlGetEnergy>,
    get_power: Option<NvmlGetPower>,
    error_string: Option<NvmlErrorString>,
    _lib: Library,
}

impl std::fmt::Debug for Nvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvml")
            .field("library", &self.library)
            .finish()
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: nvmlInit_v2 succeeded in `load`; init and shutdown are
        // reference counted by NVML, so other users in the process are fine.
        unsafe {
            (self.shutdown)();
        }
    }
}

impl Nvml {
    /// dlopens `library` and calls nvmlInit_v2. The error names the library
    /// and what to do.
    fn load(library: &str) -> Result<Arc<Nvml>, NvmlError> {
        // SAFETY: loading the NVIDIA management library runs its
        // initialisers, as every NVML program does.
        let lib = unsafe { Library::new(library) }.map_err(|e| {
            log::debug!("dlopen({library}) failed: {e}");
            NvmlError::NotPresent {
                library: library.to_owned(),
            }
        })?;
        // SAFETY (all `get` calls): the types match nvml.h (nvmlReturn_t is
        // a C enum, unsigned int handles, nvmlDevice_t an opaque pointer,
        // unsigned long long mJ, unsigned int mW).
        unsafe {
            let need = |symbol: &'static str| NvmlError::NotNvml {
                library: library.to_owned(),
                symbol,
            };
            let init: Symbol<NvmlInit> =
                lib.get(b"nvmlInit_v2\0").map_err(|_| need("nvmlInit_v2"))?;
            let shutdown: NvmlShutdown = *lib
                .get::<NvmlShutdown>(b"nvmlShutdown\0")
                .map_err(|_| need("nvmlShutdown"))?;
            let get_count: NvmlGetCount = *lib
                .get::<NvmlGetCount>(b"nvmlDeviceGetCount_v2\0")
                .map_err(|_| need("nvmlDeviceGetCount_v2"))?;
            let get_handle: NvmlGetHandle = *lib
                .get::<NvmlGetHandle>(b"nvmlDeviceGetHandleByIndex_v2\0")
                .map_err(|_| need("nvmlDeviceGetHandleByIndex_v2"))?;
            let get_handle_by_pci = lib
                .get::<NvmlGetHandleByPci>(b"nvmlDeviceGetHandleByPciBusId_v2\0")
                .ok()
                .map(|s| *s);
            let get_energy = lib
                .get::<NvmlGetEnergy>(b"nvmlDeviceGetTotalEnergyConsumption\0")
                .ok()
                .map(|s| *s);
            let get_power = lib
                .get::<NvmlGetPower>(b"nvmlDeviceGetPowerUsage\0")
                .ok()
                .map(|s| *s);
            let error_string = lib
                .get::<NvmlErrorString>(b"nvmlErrorString\0")
                .ok()
                .map(|s| *s);
            let rc = init();
            let nvml = Nvml {
                library: library.to_string(),
                shutdown,
                get_count,
                get_handle,
                get_handle_by_pci,
                get_energy,
                get_power,
                error_string,
                _lib: lib,
            };
            if rc != NVML_SUCCESS {
                let failed = NvmlError::Call {
                    call: "nvmlInit_v2".to_owned(),
                    why: nvml.describe(rc),
                };
                // Not initialised: nothing to shut down.
                std::mem::forget(nvml);
                return Err(failed);
            }
            Ok(Arc::new(nvml))
        }
    }

    fn describe(&self, rc: c_uint) -> String {
        if let Some(f) = self.error_string {
            // SAFETY: nvmlErrorString returns a static string or null.
            let msg = unsafe { f(rc) };
            if !msg.is_null() {
                // SAFETY: a NUL-terminated static string from NVML.
                let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
                return format!("{text} (nvmlReturn {rc})");
            }
        }
        format!("nvmlReturn {rc}")
    }

    fn count(&self) -> Result<u32, NvmlError> {
        let mut n: c_uint = 0;
        // SAFETY: a valid out pointer; NVML is initialised.
        let rc = unsafe { (self.get_count)(&mut n) };
        if rc != NVML_SUCCESS {
            return Err(NvmlError::Call {
                call: "nvmlDeviceGetCount_v2".to_owned(),
                why: self.describe(rc),
            });
        }
        Ok(n)
    }

    fn handle(&self, index: u32) -> Result<RawDevice, NvmlError> {
        let mut dev: RawDevice = std::ptr::null_mut();
        // SAFETY: a valid out pointer; NVML is initialised.
        let rc = unsafe { (self.get_handle)(index, &mut dev) };
        if rc != NVML_SUCCESS {
            return Err(NvmlError::Call {
                call: format!("nvmlDeviceGetHandleByIndex_v2({index})"),
                why: self.describe(rc),
            });
        }
        Ok(dev)
    }

    /// The handle of the GPU at PCI address `bus_id` ("0000:01:00.0").
    fn handle_by_pci(&self, bus_id: &str) -> Result<RawDevice, NvmlError> {
        let f = self
            .get_handle_by_pci
            .ok_or_else(|| NvmlError::NoPciLookup {
                library: self.library.clone(),
            })?;
        let c_id =
            std::ffi::CString::new(bus_id).map_err(|_| NvmlError::BadPciId(bus_id.to_owned()))?;
        let mut dev: RawDevice = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out pointer.
        let rc = unsafe { f(c_id.as_ptr(), &mut dev) };
        if rc != NVML_SUCCESS {
            return Err(NvmlError::Call {
                call: format!("nvmlDeviceGetHandleByPciBusId_v2({bus_id})"),
                why: self.describe(rc),
            });
        }
        Ok(dev)
    }

    /// The handle of CUDA device `index`: found by its PCI address when
    /// libcuda tells it, since NVML numbers GPUs by PCI bus while CUDA puts
    /// the fastest first and honours CUDA_VISIBLE_DEVICES; else NVML's
    /// device `index` (the same on a machine with one GPU).
    fn handle_for_cuda(
        &self,
        index: u32,
        bus_ids: Option<&[String]>,
    ) -> Result<RawDevice, NvmlError> {
        match bus_ids {
            Some(ids) => match ids.get(index as usize) {
                // A driver too old for the by-PCI lookup: NVML's order.
                Some(_) if self.get_handle_by_pci.is_none() => self.handle(index),
                Some(id) => self.handle_by_pci(id),
                None => Err(NvmlError::NotInCuda {
                    count: ids.len(),
                    index,
                }),
            },
            None => self.handle(index),
        }
    }

    /// Total energy in mJ, Err(rc) when the call fails.
    fn energy_mj(&self, dev: RawDevice) -> Result<u64, c_uint> {
        let f = self.get_energy.ok_or(NVML_ERROR_NOT_SUPPORTED)?;
        let mut mj: c_ulonglong = 0;
        // SAFETY: a handle from nvmlDeviceGetHandleByIndex_v2, valid while
        // NVML stays initialised (this struct is alive).
        let rc = unsafe { f(dev, &mut mj) };
        if rc == NVML_SUCCESS {
            Ok(mj)
        } else {
            Err(rc)
        }
    }

    /// Power now in mW, Err(rc) when the call fails.
    fn power_mw(&self, dev: RawDevice) -> Result<u32, c_uint> {
        let f = self.get_power.ok_or(NVML_ERROR_NOT_SUPPORTED)?;
        let mut mw: c_uint = 0;
        // SAFETY: as in energy_mj.
        let rc = unsafe { f(dev, &mut mw) };
        if rc == NVML_SUCCESS {
            Ok(mw)
        } else {
            Err(rc)
        }
    }
}

/// How a GPU's energy is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Counter,
    PowerSamples,
}

/// One GPU as NVML sees it.
#[derive(Debug)]
pub struct NvmlDevice {
    nvml: Arc<Nvml>,
    index: u32,
    handle: Handle,
    method: Option<Method>,
}

/// nvmlDevice_t is an opaque handle NVML allows from any thread.
#[derive(Debug, Clone, Copy)]
struct Handle(RawDevice);
// SAFETY: NVML is thread-safe and its device handles are plain identifiers
// valid in every thread of the process while NVML is initialised.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// The GPUs NVML lists, readable or not, by CUDA index; empty when NVML
/// is not there.
pub fn find_all(library: &str) -> Vec<Sensor> {
    let Ok(nvml) = Nvml::load(library) else {
        return Vec::new();
    };
    let bus_ids = cuda_bus_ids();
    let count = match &bus_ids {
        Some(ids) => ids.len() as u32,
        None => nvml.count().unwrap_or(0),
    };
    (0..count)
        .filter_map(|i| {
            let dev = nvml.handle_for_cuda(i, bus_ids.as_deref()).ok()?;
            Some(sensor(&nvml, i, dev))
        })
        .collect()
}

/// The sensor for CUDA device `index`. Err when NVML is absent or has no
/// such GPU; a sensor with `readable: false` when the GPU reports neither
/// energy nor power.
pub fn for_index(library: &str, index: usize) -> Result<Sensor, NvmlError> {
    let nvml = Nvml::load(library)?;
    let index = u32::try_from(index).map_err(|_| NvmlError::NoGpu(index))?;
    let bus_ids = cuda_bus_ids();
    if bus_ids.is_none() {
        let count = nvml.count()?;
        if index >= count {
            return Err(NvmlError::NotInNvml { count, index });
        }
    }
    let dev = nvml.handle_for_cuda(index, bus_ids.as_deref())?;
    Ok(sensor(&nvml, index, dev))
}

type CuInit = unsafe extern "C" fn(c_uint) -> std::ffi::c_int;
type CuDeviceGetCount = unsafe extern "C" fn(*mut std::ffi::c_int) -> std::ffi::c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut std::ffi::c_int, std::ffi::c_int) -> std::ffi::c_int;
type CuDeviceGetPciBusId =
    unsafe extern "C" fn(*mut c_char, std::ffi::c_int, std::ffi::c_int) -> std::ffi::c_int;

/// The PCI address of every CUDA device in CUDA's order, from libcuda, or
/// None when libcuda cannot tell (not installed, no device).
fn cuda_bus_ids() -> Option<Vec<String>> {
    // SAFETY: loading the CUDA driver library, as crate::hardware::cuda does.
    let lib = unsafe { Library::new(crate::hardware::cuda::LIBCUDA) }.ok()?;
    // SAFETY: the prototypes match cuda.h (CUresult and CUdevice are int).
    unsafe {
        let init: Symbol<CuInit> = lib.get(b"cuInit\0").ok()?;
        let get_count: Symbol<CuDeviceGetCount> = lib.get(b"cuDeviceGetCount\0").ok()?;
        let get: Symbol<CuDeviceGet> = lib.get(b"cuDeviceGet\0").ok()?;
        let bus_id: Symbol<CuDeviceGetPciBusId> = lib.get(b"cuDeviceGetPCIBusId\0").ok()?;
        if init(0) != 0 {
            return None;
        }
        let mut count = 0;
        if get_count(&mut count) != 0 || count <= 0 {
            return None;
        }
        let mut ids = Vec::new();
        for i in 0..count {
            let mut dev = 0;
            if get(&mut dev, i) != 0 {
                return None;
            }
            // "0000:01:00.0" plus NUL; cuda.h asks for at least 13 bytes.
            let mut buf = [0 as c_char; 32];
            if bus_id(buf.as_mut_ptr(), buf.len() as std::ffi::c_int, dev) != 0 {
                return None;
            }
            ids.push(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned());
        }
        Some(ids)
    }
}

/// `index` is the CUDA index, `dev` its NVML handle.
fn sensor(nvml: &Arc<Nvml>, index: u32, dev: RawDevice) -> Sensor {
    let (method, why_not) = match nvml.energy_mj(dev) {
        Ok(_) => (Some(Method::Counter), None),
        Err(rc) if rc == NVML_ERROR_NOT_SUPPORTED => match nvml.power_mw(dev) {
            Ok(_) => (Some(Method::PowerSamples), None),
            Err(rc) => (
                None,
                Some(NvmlError::NoReading {
                    index,
                    why: nvml.describe(rc),
                }),
            ),
        },
        Err(rc) => (
            None,
            Some(NvmlError::EnergyCounter {
                index,
                why: nvml.describe(rc),
            }),
        ),
    };
    let rail = match method {
        Some(Method::PowerSamples) => "power usage (sampled)",
        _ => "total energy",
    };
    let info = SensorInfo {
        name: format!(
            "NVML {}",
            crate::devices::Device::Cuda(index as usize).slug()
        ),
        kind: "nvml".to_string(),
        covers: crate::devices::Device::Cuda(index as usize).slug(),
        rails: vec![rail.to_string()],
        // Both set by Sensor::new from why_not.
        readable: false,
        why_not: None,
    };
    Sensor::new(
        info,
        SensorKind::Nvml,
        Vec::new(),
        Source::Nvml(NvmlDevice {
            nvml: Arc::clone(nvml),
            index,
            handle: Handle(dev),
            method,
        }),
        why_not.map(EnergyError::from),
    )
}

impl NvmlDevice {
    pub(super) fn start(&self) -> Result<RunningInner, EnergyError> {
        let dev = self.handle;
        match self.method {
            Some(Method::Counter) => {
                let start = self.nvml.energy_mj(dev.0).map_err(|rc| self.failed(rc))?;
                Ok(RunningInner::NvmlCounter(CounterRunning {
                    nvml: Arc::clone(&self.nvml),
                    index: self.index,
                    handle: dev,
                    started: Instant::now(),
                    start_mj: start,
                }))
            }
            Some(Method::PowerSamples) => {
                let nvml = Arc::clone(&self.nvml);
                let index = self.index;
                let sampler: Sampler = sampler::spawn(sampler::PERIOD, move || {
                    let dev = dev;
                    nvml.power_mw(dev.0)
                        .map(|mw| f64::from(mw) / 1e3)
                        .map_err(|rc| {
                            NvmlError::Power {
                                index,
                                why: nvml.describe(rc),
                            }
                            .into()
                        })
                })?;
                Ok(RunningInner::Sampled(sampler))
            }
            None => Err(NvmlError::NoMethod(self.index).into()),
        }
    }

    fn failed(&self, rc: c_uint) -> NvmlError {
        NvmlError::EnergyCounter {
            index: self.index,
            why: self.nvml.describe(rc),
        }
    }
}

/// The energy counter read at start.
#[derive(Debug)]
pub struct CounterRunning {
    nvml: Arc<Nvml>,
    index: u32,
    handle: Handle,
    started: Instant,
    start_mj: u64,
}

impl CounterRunning {
    pub(super) fn finish(self) -> Result<Energy, EnergyError> {
        let end = self
            .nvml
            .energy_mj(self.handle.0)
            .map_err(|rc| NvmlError::EnergyCounter {
                index: self.index,
                why: self.nvml.describe(rc),
            })?;
        // A 64-bit mJ counter does not wrap; a smaller value means the
        // driver was reloaded in between.
        let mj = end
            .checked_sub(self.start_mj)
            .ok_or(NvmlError::Backwards(self.index))?;
        Ok(Energy {
            joules: mj as f64 * RESOLUTION_J,
            seconds: self.started.elapsed().as_secs_f64(),
            samples: 2,
            sampling_hz: None,
            resolution_j: Some(RESOLUTION_J),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_var_names_the_library() {
        assert_eq!(library_from_env(None), LIBNVML);
        assert_eq!(library_from_env(Some("".into())), LIBNVML);
        assert_eq!(
            library_from_env(Some("/opt/nvidia/libnvidia-ml.so.1".into())),
            "/opt/nvidia/libnvidia-ml.so.1"
        );
    }

    #[test]
    fn a_missing_library_is_a_clean_error() {
        let err = for_index("/nonexistent/libnvidia-ml.so.1", 0).unwrap_err();
        assert!(matches!(err, NvmlError::NotPresent { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("/nonexistent/libnvidia-ml.so.1 not present"),
            "{err}"
        );
        assert!(err.contains(LIBRARY_ENV), "{err}");
        assert!(find_all("/nonexistent/libnvidia-ml.so.1").is_empty());
    }

    #[test]
    fn a_library_that_is_not_nvml_is_a_clean_error() {
        // libc is always loadable and has none of NVML's symbols.
        let err = for_index("libc.so.6", 0).unwrap_err();
        assert!(
            matches!(
                err,
                NvmlError::NotNvml {
                    symbol: "nvmlInit_v2",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("libc.so.6 lacks nvmlInit_v2"), "{err}");
    }
}
