//! CUDA as the worker sees it through libtorch: how many devices it can
//! run on, why there are none, and the peak host and device memory of one
//! precision.

use crate::shim;
use precisiond::devices::Device;
use precisiond::hardware::Hardware;
use precisiond::memory;
use precisiond::report::{Method, PrecisionResult, Status};

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
    cuda: Option<Result<shim::CudaMemory, String>>,
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
