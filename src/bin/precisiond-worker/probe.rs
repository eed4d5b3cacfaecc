//! The hardware probe's timing (see precisiond::hardware::probe for what it
//! measures and why): one GEMM and one convolution per precision, on the
//! CPU or a CUDA device, through libtorch.

use precisiond::hardware::probe::{
    OpTimes, PrecisionProbe, ProbeReport, CONV_HW, CONV_IN, CONV_OUT, GEMM_N, MAX_ROUNDS,
    PRECISION_BUDGET, ROUNDS_TIME,
};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Runs the probe on `device`. Fails only when FP32 itself cannot run (then
/// there is nothing to compare with); a failing FP16/BF16 op is recorded in
/// that precision's result.
pub fn run(device: Device) -> Result<ProbeReport, String> {
    let start = Instant::now();
    let _guard = tch::no_grad_guard();
    let threads = tch::get_num_threads();
    let inputs = Inputs::new(device).map_err(|e| format!("creating probe tensors failed: {e}"))?;

    let mut lanes: Vec<Lane> = [Kind::Float, Kind::Half, Kind::BFloat16]
        .into_iter()
        .map(|kind| Lane::new(&inputs, kind))
        .collect();

    // Warm-up: the first call creates kernels (oneDNN primitives, cuBLAS
    // handles) and touches fresh memory, so it is not counted. When that
    // call alone exceeds the precision's budget it is counted after all:
    // the precision is clearly slow, and more calls would only stretch the
    // probe on a slow board.
    for lane in &mut lanes {
        for op in [Op::Gemm, Op::Conv] {
            match lane.call(op, device) {
                Ok(ms) if ms > PRECISION_BUDGET.as_secs_f64() * 1e3 => lane.record(op, ms),
                Ok(_) => {}
                Err(e) => lane.fail(e),
            }
        }
    }

    let rounds_deadline = Instant::now() + ROUNDS_TIME;
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && (rounds == 0 || Instant::now() < rounds_deadline) {
        for lane in &mut lanes {
            if lane.error.is_some() || (lane.has_both() && lane.spent >= PRECISION_BUDGET) {
                continue;
            }
            for op in [Op::Gemm, Op::Conv] {
                match lane.call(op, device) {
                    Ok(ms) => lane.record(op, ms),
                    Err(e) => {
                        lane.fail(e);
                        break;
                    }
                }
            }
        }
        rounds += 1;
    }

    let mut lanes = lanes.into_iter();
    let fp32_lane = lanes.next().expect("fp32 lane");
    let fp32_calls = fp32_lane.calls;
    let fp32 = fp32_lane
        .result()
        .map_err(|e| format!("fp32 probe failed: {e}"))?;
    let compare = |lane: Lane| -> Result<PrecisionProbe, String> {
        let calls = lane.calls;
        let times = lane.result()?;
        let speedup = ((fp32.gemm_ms / times.gemm_ms) * (fp32.conv_ms / times.conv_ms)).sqrt();
        Ok(PrecisionProbe {
            times,
            speedup_vs_fp32: speedup,
            calls,
        })
    };
    let fp16 = compare(lanes.next().expect("fp16 lane"));
    let bf16 = compare(lanes.next().expect("bf16 lane"));
    Ok(ProbeReport {
        device: match device {
            Device::Cuda(i) => format!("cuda{i}"),
            _ => "cpu".to_owned(),
        },
        threads,
        fp32,
        fp16,
        bf16,
        fp32_calls,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    })
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
}

#[derive(Clone, Copy)]
enum Op {
    Gemm,
    Conv,
}

/// One precision's tensors and measurements so far.
struct Lane {
    kind: Kind,
    tensors: Result<[Tensor; 5], String>,
    gemm_ms: f64,
    conv_ms: f64,
    /// Timed GEMM calls (conv calls are the same or one fewer).
    calls: usize,
    spent: Duration,
    error: Option<String>,
}

impl Lane {
    fn new(inputs: &Inputs, kind: Kind) -> Self {
        let cast = || -> Result<[Tensor; 5], tch::TchError> {
            Ok([
                inputs.a.f_to_kind(kind)?,
                inputs.b.f_to_kind(kind)?,
                inputs.x.f_to_kind(kind)?,
                inputs.w.f_to_kind(kind)?,
                inputs.bias.f_to_kind(kind)?,
            ])
        };
        let tensors = cast().map_err(|e| format!("casting to {kind:?}: {e}"));
        let error = tensors.as_ref().err().cloned();
        Lane {
            kind,
            tensors,
            gemm_ms: f64::INFINITY,
            conv_ms: f64::INFINITY,
            calls: 0,
            spent: Duration::ZERO,
            error,
        }
    }

    /// One call of `op`, in milliseconds (synchronised on CUDA).
    fn call(&mut self, op: Op, device: Device) -> Result<f64, String> {
        let [a, b, x, w, bias] = self.tensors.as_ref().map_err(Clone::clone)?;
        let t = Instant::now();
        let out = match op {
            Op::Gemm => a.f_matmul(b),
            Op::Conv => x.f_conv2d(w, Some(bias), [1, 1], [1, 1], [1, 1], 1),
        }
        .map_err(|e| {
            let what = match op {
                Op::Gemm => "GEMM",
                Op::Conv => "conv2d",
            };
            format!("{what} in {:?}: {e}", self.kind)
        })?;
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let elapsed = t.elapsed();
        drop(out);
        self.spent += elapsed;
        Ok(elapsed.as_secs_f64() * 1e3)
    }

    fn record(&mut self, op: Op, ms: f64) {
        match op {
            Op::Gemm => {
                self.gemm_ms = self.gemm_ms.min(ms);
                self.calls += 1;
            }
            Op::Conv => self.conv_ms = self.conv_ms.min(ms),
        }
    }

    fn has_both(&self) -> bool {
        self.gemm_ms.is_finite() && self.conv_ms.is_finite()
    }

    fn fail(&mut self, e: String) {
        self.error.get_or_insert(e);
    }

    fn result(self) -> Result<OpTimes, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !self.has_both() {
            return Err("no timed call completed".to_string());
        }
        Ok(OpTimes {
            gemm_ms: self.gemm_ms,
            conv_ms: self.conv_ms,
        })
    }
}


/// The worker's answers to what detection asks of libtorch.
pub struct LinkedLibtorch;

impl precisiond::hardware::Libtorch for LinkedLibtorch {
    fn cpu_capability(&self) -> Result<String, String> {
        crate::shim::cpu_capability()
    }

    fn quantized_engines(&self) -> Result<Vec<String>, String> {
        crate::shim::supported_qengines()
    }

    fn cuda_usable(&self, index: usize) -> bool {
        tch::Cuda::is_available() && (index as i64) < tch::Cuda::device_count()
    }

    fn probe(&self, cuda: Option<usize>, threads: Option<usize>) -> Result<ProbeReport, String> {
        let previous = tch::get_num_threads();
        if let Some(n) = threads.filter(|&n| n > 0) {
            tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let result = run(cuda.map_or(Device::Cpu, Device::Cuda));
        tch::set_num_threads(previous);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use precisiond::hardware::Libtorch;

    #[test]
    fn the_probe_restores_the_thread_count() {
        let before = tch::get_num_threads();
        let report = LinkedLibtorch.probe(None, Some(1)).unwrap();
        assert_eq!(report.threads, 1);
        assert_eq!(report.device, "cpu");
        assert_eq!(tch::get_num_threads(), before);
    }
}
