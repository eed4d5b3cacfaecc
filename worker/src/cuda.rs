//! CUDA as the worker sees it through libtorch: loading libtorch's CUDA
//! part where there is a GPU, how many devices it can run on, why there are
//! none, and the peak host and device memory of one precision.

use crate::shim;
use precisiond_core::devices::Device;
use precisiond_core::hardware::Hardware;
use precisiond_core::memory;
use precisiond_core::report::{Method, PrecisionResult, Status};

/// The variable that makes the worker load libtorch_cuda without a GPU
/// (tests use it to check the loading itself on a machine without one).
pub const FORCE_LOAD_VAR: &str = "PRECISIOND_LOAD_LIBTORCH_CUDA";

/// Whether libtorch's CUDA part was loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaLoad {
    Loaded(String),
    NotLoaded(String),
}

impl CudaLoad {
    pub fn describe(&self) -> &str {
        match self {
            CudaLoad::Loaded(why) | CudaLoad::NotLoaded(why) => why,
        }
    }
}

/// Loads libtorch_cuda.so (RTLD_GLOBAL, for good) when the CUDA driver
/// reports a GPU, so its static initialisers register libtorch's CUDA
/// hooks exactly as linking it would have; call it before anything asks
/// libtorch about CUDA. Without a GPU nothing is loaded: libtorch_cuda and
/// the CUDA libraries behind it (about 3 GB on disk, some 390 MB of
/// resident memory) stay out of the worker.
pub fn load_libtorch_cuda() -> CudaLoad {
    let forced = std::env::var_os(FORCE_LOAD_VAR).is_some_and(|v| v == "1");
    let query = precisiond_core::hardware::cuda::query();
    let why = if !query.devices.is_empty() {
        format!("the CUDA driver reports {} GPU(s)", query.devices.len())
    } else if forced {
        format!("{FORCE_LOAD_VAR}=1, though there is no GPU")
    } else {
        let cause = query
            .note
            .unwrap_or_else(|| "no CUDA device found".to_owned());
        return CudaLoad::NotLoaded(format!("libtorch_cuda.so not loaded: {cause}"));
    };
    // Its initialisers register CUDA with libtorch, as linking would have.
    match crate::libs::load_for_good("libtorch_cuda.so") {
        Ok(()) => CudaLoad::Loaded(format!("libtorch_cuda.so loaded: {why}")),
        Err(e) => CudaLoad::NotLoaded(format!(
            "libtorch_cuda.so not loaded although {why}: {e} (a CPU-only libtorch?); CUDA \
             devices get no results"
        )),
    }
}

/// The libtorch libraries this process has mapped (libtorch*, libc10*),
/// from /proc/self/maps: what `detect` and the report name.
pub fn mapped_libtorch_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut names: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|path| path.rsplit('/').next())
        .filter(|name| name.starts_with("libtorch") || name.starts_with("libc10"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The note `detect` and the report carry: which libtorch libraries are
/// loaded, and why libtorch_cuda is or is not among them.
pub fn libraries_note(load: &CudaLoad) -> String {
    format!(
        "libtorch libraries loaded: {}; {}",
        mapped_libtorch_libraries().join(", "),
        load.describe()
    )
}

/// CUDA devices this libtorch can run on: none when it has no CUDA (a
/// CPU-only build, libtorch_cuda not loaded) or the machine has no GPU.
pub fn usable_devices() -> usize {
    if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

/// Why there is no CUDA device, in the words of the hardware detection.
pub fn no_cuda_cause(hardware: &Hardware) -> String {
    if hardware.gpus.is_empty() {
        hardware
            .notes
            .iter()
            .find(|n| n.contains("CUDA"))
            .cloned()
            .unwrap_or_else(|| "no CUDA device found".to_owned())
    } else {
        format!(
            "the CUDA driver sees {} GPU(s), but this libtorch cannot use CUDA (a CPU-only \
             libtorch, or libtorch_cuda not loaded)",
            hardware.gpus.len()
        )
    }
}

/// Peak host and device memory of one precision: started before it is
/// prepared, read after it is timed.
pub struct MemoryWindow {
    rss_scope: memory::PeakScope,
    /// The CUDA allocator's state when the window started, or why it is unknown.
    cuda: Option<Result<shim::CudaMemory, shim::ShimError>>,
}

impl MemoryWindow {
    pub fn start(device: Device) -> MemoryWindow {
        let cuda = match device {
            Device::Cpu => None,
            Device::Cuda(i) => {
                Some(shim::cuda_start_memory_window(i).and_then(|()| shim::cuda_memory(i)))
            }
        };
        MemoryWindow {
            rss_scope: memory::reset_peak_rss(),
            cuda,
        }
    }

    /// Writes the peaks into `result`, when it measured something here
    /// (TensorRT runs in trtexec's process: its memory is not the worker's).
    pub fn finish(self, device: Device, result: &mut PrecisionResult) {
        if result.status != Status::Ok || result.method == Method::Tensorrt {
            return;
        }
        result.peak_host_rss_bytes = memory::peak_rss_bytes();
        if self.rss_scope == memory::PeakScope::SinceStart {
            result.notes.push(memory::SINCE_START_NOTE.to_owned());
        }
        let Device::Cuda(i) = device else {
            return;
        };
        match self
            .cuda
            .map(|start| start.and_then(|s| shim::cuda_memory(i).map(|end| (s, end))))
        {
            Some(Ok((start, end))) => {
                result.peak_device_memory_bytes =
                    Some(end.peak_allocated.saturating_sub(start.allocated));
                result.peak_device_reserved_bytes =
                    Some(end.peak_reserved.saturating_sub(start.reserved));
                result.notes.push(format!(
                    "peak device memory from libtorch's CUDA caching allocator: bytes handed out (and \
                     reserved from the driver) on top of the {} bytes already allocated when this \
                     precision started",
                    start.allocated
                ));
            }
            Some(Err(e)) => result.notes.push(format!(
                "peak device memory unknown: libtorch's CUDA allocator statistics failed: {e}"
            )),
            None => {}
        }
    }
}
