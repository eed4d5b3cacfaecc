//! The hardware probe's timing (see precisiond_core::hardware::probe for what it
//! measures and why): one GEMM and one convolution per precision, on the
//! CPU or a CUDA device, through libtorch.

use precisiond_core::hardware::probe::{
    self, LaneFailure, ProbeError, ProbeOp, ProbeReport, CONV_HW, CONV_IN, CONV_OUT, GEMM_N,
    PROBE_PRECISIONS,
};
use precisiond_core::hardware::LibtorchError;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Runs the probe on `device`: libtorch does the calls, the library's
/// `probe::measure` decides how many and in which order.
pub fn run(device: Device) -> Result<ProbeReport, ProbeError> {
    let start = Instant::now();
    let _guard = tch::no_grad_guard();
    let threads = tch::get_num_threads();
    let inputs = Inputs::new(device).map_err(|e| ProbeError::Setup(e.to_string()))?;
    let lanes: Vec<Result<[Tensor; 5], LaneFailure>> = [Kind::Float, Kind::Half, Kind::BFloat16]
        .into_iter()
        .map(|kind| {
            inputs
                .cast(kind)
                .map_err(|e| LaneFailure(format!("casting to {kind:?}: {e}")))
        })
        .collect();
    let name = match device {
        Device::Cuda(i) => precisiond_core::devices::Device::Cuda(i).slug(),
        _ => precisiond_core::devices::Device::Cpu.slug(),
    };
    let mut report = probe::measure(name, threads, |lane, op| {
        let [a, b, x, w, bias] = lanes[lane].as_ref().map_err(Clone::clone)?;
        let t = Instant::now();
        let out = match op {
            ProbeOp::Gemm => a.f_matmul(b),
            ProbeOp::Conv => x.f_conv2d(w, Some(bias), [1, 1], [1, 1], [1, 1], 1),
        }
        .map_err(|e| LaneFailure(format!("{op:?} in {}: {e}", PROBE_PRECISIONS[lane])))?;
        // CUDA calls return at launch: wait for the kernel, or the probe
        // would time the launch alone.
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        drop(out);
        Ok(ms)
    })?;
    report.wall_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

struct Inputs {
    a: Tensor,
    b: Tensor,
    x: Tensor,
    w: Tensor,
    bias: Tensor,
}

impl Inputs {
    fn new(device: Device) -> Result<Self, tch::TchError> {
        let opts = (Kind::Float, device);
        Ok(Inputs {
            a: Tensor::f_randn([GEMM_N, GEMM_N], opts)?,
            b: Tensor::f_randn([GEMM_N, GEMM_N], opts)?,
            x: Tensor::f_randn([1, CONV_IN, CONV_HW, CONV_HW], opts)?,
            // Scaled so FP16 cannot overflow: sums of 576 products stay small.
            w: Tensor::f_randn([CONV_OUT, CONV_IN, 3, 3], opts)?.f_mul_scalar(0.05)?,
            bias: Tensor::f_randn([CONV_OUT], opts)?,
        })
    }

    fn cast(&self, kind: Kind) -> Result<[Tensor; 5], tch::TchError> {
        Ok([
            self.a.f_to_kind(kind)?,
            self.b.f_to_kind(kind)?,
            self.x.f_to_kind(kind)?,
            self.w.f_to_kind(kind)?,
            self.bias.f_to_kind(kind)?,
        ])
    }
}

/// The worker's answers to what detection asks of libtorch.
pub struct LinkedLibtorch;

impl precisiond_core::hardware::Libtorch for LinkedLibtorch {
    fn cpu_capability(&self) -> Result<String, LibtorchError> {
        crate::shim::cpu_capability().map_err(|e| LibtorchError(e.to_string()))
    }

    fn quantized_engines(&self) -> Result<Vec<String>, LibtorchError> {
        crate::shim::supported_qengines().map_err(|e| LibtorchError(e.to_string()))
    }

    fn cuda_usable(&self, index: usize) -> bool {
        tch::Cuda::is_available() && (index as i64) < tch::Cuda::device_count()
    }

    fn probe(
        &self,
        cuda: Option<usize>,
        threads: Option<usize>,
    ) -> Result<ProbeReport, ProbeError> {
        let previous = tch::get_num_threads();
        if let Some(n) = threads.filter(|&n| n > 0) {
            tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let result = run(cuda.map_or(Device::Cpu, Device::Cuda));
        tch::set_num_threads(previous);
        result
    }
}

/// [`LinkedLibtorch`], with the probe's result kept in `dir` (the state
/// folder's `probe/`) and reused while the boot and libtorch stay the same
/// (`precisiond_core::hardware::probe_cache`). A job that cannot read or write
/// the cache probes as if there were none.
pub struct CachedProbe {
    pub dir: Option<std::path::PathBuf>,
    pub libtorch: String,
}

impl precisiond_core::hardware::Libtorch for CachedProbe {
    fn cpu_capability(&self) -> Result<String, LibtorchError> {
        LinkedLibtorch.cpu_capability()
    }

    fn quantized_engines(&self) -> Result<Vec<String>, LibtorchError> {
        LinkedLibtorch.quantized_engines()
    }

    fn cuda_usable(&self, index: usize) -> bool {
        LinkedLibtorch.cuda_usable(index)
    }

    fn probe(
        &self,
        cuda: Option<usize>,
        threads: Option<usize>,
    ) -> Result<ProbeReport, ProbeError> {
        use precisiond_core::hardware::probe_cache::{self, ProbeKey};
        let device = cuda
            .map_or(
                precisiond_core::devices::Device::Cpu,
                precisiond_core::devices::Device::Cuda,
            )
            .slug();
        let n = threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
        let key = ProbeKey::this_boot(&self.libtorch, &device, n);
        if let (Some(dir), Some(key)) = (&self.dir, &key) {
            if let Some(report) = probe_cache::load(dir, key) {
                return Ok(report);
            }
        }
        let report = LinkedLibtorch.probe(cuda, threads)?;
        if let (Some(dir), Some(key)) = (&self.dir, &key) {
            if let Err(e) = probe_cache::store(dir, key, &report) {
                log::warn!("{e}");
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use precisiond_core::hardware::Libtorch;

    #[test]
    fn the_probe_restores_the_thread_count() {
        let before = tch::get_num_threads();
        let report = LinkedLibtorch.probe(None, Some(1)).unwrap();
        assert_eq!(report.threads, 1);
        assert_eq!(report.device, "cpu");
        assert_eq!(tch::get_num_threads(), before);
    }
}
