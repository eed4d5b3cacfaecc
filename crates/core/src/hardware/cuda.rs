//! Finds CUDA GPUs at run time through the driver API (`libcuda.so.1`),
//! loaded with `dlopen`.
//!
//! Loading the driver at run time keeps CUDA out of the build: the same
//! binary runs on a machine without any NVIDIA software (it then reports no
//! GPU) and on a Jetson or a desktop GPU (it reads each device's compute
//! capability, which decides the verdicts). It also does not depend on
//! whether libtorch's CUDA part was linked in (see docs/design.md: `--as-needed`
//! may drop `libtorch_cuda`).

use std::ffi::{c_char, c_int, c_uint, CStr};

use libloading::{Library, Symbol};

/// The default driver library; the soname the NVIDIA driver installs.
pub const LIBCUDA: &str = "libcuda.so.1";

const CUDA_SUCCESS: c_int = 0;
const CUDA_ERROR_NO_DEVICE: c_int = 100;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;
const CU_DEVICE_ATTRIBUTE_INTEGRATED: c_int = 18;

/// One GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDevice {
    /// CUDA ordinal (the N of `cudaN`, the same numbering libtorch uses).
    pub index: usize,
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Shares memory with the CPU (Jetson iGPU), from
    /// `CU_DEVICE_ATTRIBUTE_INTEGRATED`.
    pub integrated: bool,
    /// Device memory in bytes, when the driver tells.
    pub total_memory: Option<u64>,
}

/// The outcome of a query: the devices found, and in words why there are
/// none or what went wrong for some of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CudaQuery {
    pub devices: Vec<CudaDevice>,
    /// "12.4" from `cuDriverGetVersion`, when the driver loaded.
    pub driver_version: Option<String>,
    /// Set when no device was found or a device could not be read, e.g.
    /// "no CUDA device found (libcuda.so.1 not present)".
    pub note: Option<String>,
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CuGetErrorString = unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int;

/// Queries the GPUs through `libcuda.so.1`. Never fails and never panics:
/// a missing driver, a driver without devices or a broken installation all
/// give an empty list with a [`CudaQuery::note`] saying why.
pub fn query() -> CudaQuery {
    query_library(LIBCUDA)
}

/// [`query`] with another driver library name or path (tests use a name that
/// does not exist to check the degradation).
pub fn query_library(library: &str) -> CudaQuery {
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which
    // is what every CUDA program does; nothing else is loaded.
    let lib = match unsafe { Library::new(library) } {
        Ok(lib) => lib,
        Err(e) => {
            log::debug!("dlopen({library}) failed: {e}");
            return CudaQuery {
                note: Some(format!("no CUDA device found ({library} not present)")),
                ..CudaQuery::default()
            };
        }
    };
    match query_loaded(&lib, library) {
        Ok(q) => q,
        Err(e) => CudaQuery {
            note: Some(e.to_string()),
            ..CudaQuery::default()
        },
    }
}

/// A library that lacks a driver API entry point: not a CUDA driver.
#[derive(Debug, thiserror::Error)]
#[error("{library} lacks {symbol}: not a usable CUDA driver")]
struct NotADriver {
    library: String,
    symbol: &'static str,
}

fn query_loaded(lib: &Library, library: &str) -> Result<CudaQuery, NotADriver> {
    // SAFETY (all `get` calls): the types match the driver API's prototypes
    // in cuda.h (CUresult = int, CUdevice = int, unsigned int flags,
    // size_t bytes); the `_v2` total-memory entry point is the one cuda.h
    // maps `cuDeviceTotalMem` to on 64-bit systems.
    unsafe {
        let sym = |symbol: &'static str| NotADriver {
            library: library.to_owned(),
            symbol,
        };
        let cu_init: Symbol<CuInit> = lib.get(b"cuInit\0").map_err(|_| sym("cuInit"))?;
        let get_version: Symbol<CuDriverGetVersion> = lib
            .get(b"cuDriverGetVersion\0")
            .map_err(|_| sym("cuDriverGetVersion"))?;
        let get_count: Symbol<CuDeviceGetCount> = lib
            .get(b"cuDeviceGetCount\0")
            .map_err(|_| sym("cuDeviceGetCount"))?;
        let device_get: Symbol<CuDeviceGet> =
            lib.get(b"cuDeviceGet\0").map_err(|_| sym("cuDeviceGet"))?;
        let get_name: Symbol<CuDeviceGetName> = lib
            .get(b"cuDeviceGetName\0")
            .map_err(|_| sym("cuDeviceGetName"))?;
        let get_attr: Symbol<CuDeviceGetAttribute> = lib
            .get(b"cuDeviceGetAttribute\0")
            .map_err(|_| sym("cuDeviceGetAttribute"))?;
        let total_mem: Option<Symbol<CuDeviceTotalMem>> = lib.get(b"cuDeviceTotalMem_v2\0").ok();
        let error_string: Option<Symbol<CuGetErrorString>> = lib.get(b"cuGetErrorString\0").ok();

        let describe = |code: c_int| -> String {
            if let Some(f) = &error_string {
                let mut msg: *const c_char = std::ptr::null();
                if f(code, &mut msg) == CUDA_SUCCESS && !msg.is_null() {
                    return format!(
                        "{} (CUresult {code})",
                        CStr::from_ptr(msg).to_string_lossy()
                    );
                }
            }
            format!("CUresult {code}")
        };

        let mut query = CudaQuery::default();
        let mut version: c_int = 0;
        if get_version(&mut version) == CUDA_SUCCESS && version > 0 {
            query.driver_version = Some(format!("{}.{}", version / 1000, (version % 1000) / 10));
        }

        let rc = cu_init(0);
        if rc == CUDA_ERROR_NO_DEVICE {
            query.note = Some(format!(
                "no CUDA device found (the driver in {library} reports none)"
            ));
            return Ok(query);
        }
        if rc != CUDA_SUCCESS {
            query.note = Some(format!(
                "no CUDA device found (cuInit failed: {})",
                describe(rc)
            ));
            return Ok(query);
        }

        let mut count: c_int = 0;
        let rc = get_count(&mut count);
        if rc != CUDA_SUCCESS {
            query.note = Some(format!(
                "no CUDA device found (cuDeviceGetCount failed: {})",
                describe(rc)
            ));
            return Ok(query);
        }
        if count <= 0 {
            query.note = Some("no CUDA device found (the driver reports 0 devices)".to_string());
            return Ok(query);
        }

        let mut problems = Vec::new();
        for ordinal in 0..count {
            let mut dev: c_int = 0;
            let rc = device_get(&mut dev, ordinal);
            if rc != CUDA_SUCCESS {
                problems.push(format!(
                    "cuda{ordinal}: cuDeviceGet failed: {}",
                    describe(rc)
                ));
                continue;
            }
            let mut name_buf = [0 as c_char; 256];
            let name =
                if get_name(name_buf.as_mut_ptr(), name_buf.len() as c_int, dev) == CUDA_SUCCESS {
                    // The driver NUL-terminates within the given length; the last
                    // byte is forced to NUL in case a name fills the buffer.
                    name_buf[name_buf.len() - 1] = 0;
                    CStr::from_ptr(name_buf.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                } else {
                    "unknown CUDA device".to_string()
                };
            let attr = |a: c_int| -> Result<c_int, c_int> {
                let mut v: c_int = 0;
                match get_attr(&mut v, a, dev) {
                    CUDA_SUCCESS => Ok(v),
                    rc => Err(rc),
                }
            };
            let (major, minor) = match (
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            ) {
                (Ok(a), Ok(b)) if a >= 0 && b >= 0 => (a as u32, b as u32),
                (Err(rc), _) | (_, Err(rc)) => {
                    problems.push(format!(
                        "cuda{ordinal} ({name}): compute capability unreadable: {}",
                        describe(rc)
                    ));
                    continue;
                }
                _ => {
                    problems.push(format!(
                        "cuda{ordinal} ({name}): negative compute capability"
                    ));
                    continue;
                }
            };
            let integrated = attr(CU_DEVICE_ATTRIBUTE_INTEGRATED).is_ok_and(|v| v != 0);
            let total_memory = total_mem.as_ref().and_then(|f| {
                let mut bytes: usize = 0;
                (f(&mut bytes, dev) == CUDA_SUCCESS).then_some(bytes as u64)
            });
            query.devices.push(CudaDevice {
                index: ordinal as usize,
                name,
                major,
                minor,
                integrated,
                total_memory,
            });
        }
        if !problems.is_empty() {
            query.note = Some(problems.join("; "));
        }
        Ok(query)
    }
}
