//! A micro-benchmark that checks whether libtorch really computes FP16 and
//! BF16 faster than FP32 on a device.
//!
//! CPU flags say what the hardware can do, not what libtorch's kernels use:
//! on the build machine the CPU has `avx512_fp16`, yet libtorch's FP16
//! convolution runs ~30x slower than FP32 (an emulated path). The probe
//! times one GEMM and one convolution per precision, after warm-up, and
//! caps each measurement by time, so the whole probe stays well under a
//! second even where a precision is emulated.

use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};

use super::rules::Verdict;

/// GEMM: [GEMM_N x GEMM_N] x [GEMM_N x GEMM_N].
pub const GEMM_N: i64 = 256;
/// Convolution input [1, CONV_IN, CONV_HW, CONV_HW], 3x3 kernel, CONV_OUT
/// filters, padding 1: the shape of an early ResNet stage, scaled down.
pub const CONV_IN: i64 = 32;
pub const CONV_OUT: i64 = 64;
pub const CONV_HW: i64 = 28;

/// Timed iterations per op when the op is fast.
const MAX_ITERS: usize = 7;
/// Time cap for the timed iterations of one op in one precision. An
/// emulated precision may take tens of milliseconds per call; the cap keeps
/// it to one or two timed calls.
const OP_BUDGET: Duration = Duration::from_millis(25);

/// A native precision counts as accelerated when the probe runs it at
/// least this fast relative to FP32. Not 1.0: a sub-millisecond probe on a
/// busy machine has ~10-20% noise, and a native format that is merely as
/// fast as FP32 on such small shapes still halves memory traffic on real
/// models.
pub const ACCELERATED_MIN_SPEEDUP: f64 = 0.8;
/// Below this a native-by-flag precision is reported as running on a slow
/// (emulated) path in libtorch, with both facts in the reason.
pub const SLOW_PATH_MAX_SPEEDUP: f64 = 0.5;

/// Median times of the two probe ops in one precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpTimes {
    pub gemm_ms: f64,
    pub conv_ms: f64,
}

/// One precision's probe result.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionProbe {
    pub times: OpTimes,
    /// Geometric mean of fp32/this for the GEMM and the convolution.
    pub speedup_vs_fp32: f64,
}

/// The whole probe on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub device: Device,
    /// libtorch intra-op threads during the probe.
    pub threads: i32,
    pub fp32: OpTimes,
    pub fp16: Result<PrecisionProbe, String>,
    pub bf16: Result<PrecisionProbe, String>,
    /// Wall time of the whole probe, tensor creation and warm-up included.
    pub wall_ms: f64,
}

/// Runs the probe on `device`. Fails only when FP32 itself cannot run (then
/// there is nothing to compare with); a failing FP16/BF16 op is recorded in
/// that precision's result.
pub fn run(device: Device) -> Result<ProbeReport, String> {
    let start = Instant::now();
    let _guard = tch::no_grad_guard();
    let threads = tch::get_num_threads();
    let inputs = Inputs::new(device).map_err(|e| format!("creating probe tensors failed: {e}"))?;
    let fp32 = time_precision(&inputs, Kind::Float, device).map_err(|e| format!("fp32 probe failed: {e}"))?;
    let probe = |kind| -> Result<PrecisionProbe, String> {
        let times = time_precision(&inputs, kind, device)?;
        let speedup = ((fp32.gemm_ms / times.gemm_ms) * (fp32.conv_ms / times.conv_ms)).sqrt();
        Ok(PrecisionProbe {
            times,
            speedup_vs_fp32: speedup,
        })
    };
    let fp16 = probe(Kind::Half);
    let bf16 = probe(Kind::BFloat16);
    Ok(ProbeReport {
        device,
        threads,
        fp32,
        fp16,
        bf16,
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
            w: Tensor::f_randn([CONV_OUT, CONV_IN, 3, 3], opts)?.f_mul_scalar(0.1)?,
            bias: Tensor::f_randn([CONV_OUT], opts)?,
        })
    }
}

fn time_precision(inputs: &Inputs, kind: Kind, device: Device) -> Result<OpTimes, String> {
    let cast = |t: &Tensor| t.f_to_kind(kind).map_err(|e| e.to_string());
    let (a, b) = (cast(&inputs.a)?, cast(&inputs.b)?);
    let (x, w, bias) = (cast(&inputs.x)?, cast(&inputs.w)?, cast(&inputs.bias)?);
    let gemm_ms = time_op(device, || a.f_matmul(&b)).map_err(|e| format!("GEMM: {e}"))?;
    let conv_ms = time_op(device, || x.f_conv2d(&w, Some(&bias), [1, 1], [1, 1], [1, 1], 1))
        .map_err(|e| format!("conv2d: {e}"))?;
    Ok(OpTimes { gemm_ms, conv_ms })
}

/// Median wall time of `op` in milliseconds, after warm-up.
fn time_op(device: Device, mut op: impl FnMut() -> Result<Tensor, tch::TchError>) -> Result<f64, String> {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut call = || -> Result<f64, String> {
        let t = Instant::now();
        let out = op().map_err(|e| e.to_string())?;
        sync();
        drop(out);
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    // The first call creates kernels (oneDNN primitives, cuBLAS handles) and
    // touches fresh memory; a second warm-up only when that is cheap.
    let first = call()?;
    if first < OP_BUDGET.as_secs_f64() * 1e3 / 5.0 {
        call()?;
    }
    let mut times = Vec::with_capacity(MAX_ITERS);
    let started = Instant::now();
    while times.len() < MAX_ITERS && (times.is_empty() || started.elapsed() < OP_BUDGET) {
        times.push(call()?);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Writes a probe outcome into a verdict: sets `probe_speedup_vs_fp32`,
/// `accelerated` and `probe_note`, and adds what the probe showed to the
/// reason when it contradicts or qualifies the flags.
pub fn apply(
    verdict: &mut Verdict,
    precision: &str,
    fp32: &OpTimes,
    result: &Result<PrecisionProbe, String>,
) {
    match result {
        Err(e) => {
            verdict.accelerated = Some(false);
            verdict.probe_note = Some(format!("probe failed: {e}"));
            verdict.reason = format!("{}; but libtorch's {precision} probe failed ({e})", verdict.reason);
        }
        Ok(p) => {
            let s = p.speedup_vs_fp32;
            verdict.probe_speedup_vs_fp32 = Some(round3(s));
            verdict.accelerated = Some(verdict.native && s >= ACCELERATED_MIN_SPEEDUP);
            verdict.probe_note = Some(format!(
                "GEMM {n}x{n}x{n}: {g:.3} ms vs fp32 {fg:.3} ms; conv3x3 [1,{ci},{hw},{hw}]->{co}: \
                 {c:.3} ms vs fp32 {fc:.3} ms",
                n = GEMM_N,
                ci = CONV_IN,
                hw = CONV_HW,
                co = CONV_OUT,
                g = p.times.gemm_ms,
                fg = fp32.gemm_ms,
                c = p.times.conv_ms,
                fc = fp32.conv_ms,
            ));
            let speed = if s >= 1.0 {
                format!("{s:.1}x faster than fp32")
            } else {
                format!("{:.1}x slower than fp32", 1.0 / s)
            };
            let addition = if verdict.native && s < SLOW_PATH_MAX_SPEEDUP {
                format!(
                    "but libtorch's {precision} kernels ran {speed} in the probe (emulated path)"
                )
            } else if verdict.native && s < ACCELERATED_MIN_SPEEDUP {
                format!("but libtorch's {precision} kernels ran only {s:.2}x the fp32 speed in the probe")
            } else if verdict.native {
                format!("libtorch's {precision} kernels ran {speed} in the probe")
            } else {
                format!("the probe ran {speed} (not native: no hardware arithmetic)")
            };
            verdict.reason = format!("{}; {addition}", verdict.reason);
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
