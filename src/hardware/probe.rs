//! A micro-benchmark that checks whether libtorch really computes FP16 and
//! BF16 faster than FP32 on a device.
//!
//! CPU flags say what the hardware can do, not what libtorch's kernels make
//! of it: a CPU without avx512_fp16 runs libtorch's FP16 convolution ~30x
//! slower than FP32 (design.md), and on the build machine, which *has*
//! avx512_fp16, oneDNN's FP16 kernels still run a little slower than FP32
//! while BF16 (AMX) runs 2-3x faster. The probe times one GEMM and one
//! convolution per precision and compares them with FP32 on the same device.
//!
//! The timing itself needs libtorch and lives in the worker
//! (src/bin/precisiond-worker/probe.rs); this module holds its constants,
//! its result types and how a result turns into a verdict.
//!
//! Measurement: the precisions are timed in interleaved rounds (fp32, fp16,
//! bf16, fp32, ...) and each op keeps its *minimum* time. On a small edge
//! machine the probe often shares the cores with something else (a build, the
//! supervisor): a median of a few calls then measures the scheduler (one run
//! on the build machine saw FP32 GEMM medians of 7.5 ms for a 0.1 ms op), the
//! minimum measures the kernel, and interleaving makes any slowdown hit all
//! precisions alike. Each precision has a time budget, so an emulated one
//! costs a few calls, and the whole probe stays well under a second.

use std::time::Duration;

use super::rules::Verdict;

/// GEMM: [GEMM_N x GEMM_N] x [GEMM_N x GEMM_N]. Large enough that kernel
/// speed, not call overhead, decides (at 128 FP16 and BF16 both look slow
/// on the build machine; from 512 the ratios stop changing).
pub const GEMM_N: i64 = 512;
/// Convolution input [1, CONV_IN, CONV_HW, CONV_HW], 3x3 kernel, CONV_OUT
/// filters, padding 1: a ResNet stage-1 convolution.
pub const CONV_IN: i64 = 64;
pub const CONV_OUT: i64 = 64;
pub const CONV_HW: i64 = 56;

/// Timed rounds when every precision is fast.
pub const MAX_ROUNDS: usize = 7;
/// Time one precision may spend in calls (warm-up included) before it stops
/// getting timed rounds. An emulated precision (~100 ms per call on the
/// build machine when oneDNN's FP16 kernels are disabled) gets one call of
/// each op, counted; a native one gets every round.
pub const PRECISION_BUDGET: Duration = Duration::from_millis(60);
/// No new timed round starts after this much time past the warm-up, so a
/// slow board finishes in about warm-up + this + one round.
pub const ROUNDS_TIME: Duration = Duration::from_millis(150);

/// A native precision counts as accelerated when the probe runs it at
/// least as fast as FP32. The threshold is 1.0, not lower: on the build
/// machine avx512_fp16 is native yet libtorch's FP16 kernels run at
/// 0.75-0.85x of FP32 (GEMM 1.0x, convolution 0.6-0.7x) with BF16 at 2-3x;
/// a lower threshold (0.8) would put that FP16 on either side by noise, and
/// a format that is not faster than FP32 is not worth deploying for speed.
pub const ACCELERATED_MIN_SPEEDUP: f64 = 1.0;
/// Below this a native-by-flag precision is reported as running on an
/// emulated path in libtorch (emulation costs several times FP32's time;
/// a real but weak kernel stays within 2x).
pub const SLOW_PATH_MAX_SPEEDUP: f64 = 0.5;

/// Minimum times of the two probe ops in one precision.
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
    /// Timed calls of each op (the minimum is over these).
    pub calls: usize,
}

impl PrecisionProbe {
    pub fn gemm_speedup(&self, fp32: &OpTimes) -> f64 {
        fp32.gemm_ms / self.times.gemm_ms
    }

    pub fn conv_speedup(&self, fp32: &OpTimes) -> f64 {
        fp32.conv_ms / self.times.conv_ms
    }
}

/// The whole probe on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// "cpu", "cuda0", ...
    pub device: String,
    /// libtorch intra-op threads during the probe.
    pub threads: i32,
    pub fp32: OpTimes,
    pub fp16: Result<PrecisionProbe, String>,
    pub bf16: Result<PrecisionProbe, String>,
    /// Timed calls of each op in FP32 (the minimum is over these).
    pub fp32_calls: usize,
    /// Wall time of the whole probe, tensor creation and warm-up included.
    pub wall_ms: f64,
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
            verdict.reason = format!(
                "{}; libtorch's {precision} probe failed: {e}",
                verdict.reason
            );
        }
        Ok(p) => {
            let s = p.speedup_vs_fp32;
            verdict.probe_speedup_vs_fp32 = Some(round3(s));
            verdict.accelerated = Some(verdict.native && s >= ACCELERATED_MIN_SPEEDUP);
            verdict.probe_note = Some(format!(
                "GEMM {n}x{n}x{n}: {g:.3} ms vs fp32 {fg:.3} ms ({gs:.2}x); \
                 conv3x3 [1,{ci},{hw},{hw}]->{co}: {c:.3} ms vs fp32 {fc:.3} ms ({cs:.2}x); \
                 minimum of {k} call(s) each, interleaved",
                n = GEMM_N,
                ci = CONV_IN,
                hw = CONV_HW,
                co = CONV_OUT,
                g = p.times.gemm_ms,
                fg = fp32.gemm_ms,
                gs = p.gemm_speedup(fp32),
                c = p.times.conv_ms,
                fc = fp32.conv_ms,
                cs = p.conv_speedup(fp32),
                k = p.calls,
            ));
            let speed = if s >= 1.0 {
                format!("{s:.2}x faster than fp32")
            } else {
                format!("{:.2}x slower than fp32", 1.0 / s)
            };
            let addition = if verdict.native && s < SLOW_PATH_MAX_SPEEDUP {
                format!(
                    "but libtorch's {precision} kernels ran {speed} in the probe (emulated path)"
                )
            } else if verdict.native && s < ACCELERATED_MIN_SPEEDUP {
                format!(
                    "but libtorch's {precision} kernels ran {speed} in the probe \
                     (no speedup from the hardware support)"
                )
            } else if verdict.native {
                format!("libtorch's {precision} kernels ran {speed} in the probe")
            } else {
                format!("the probe ran it {speed} (not native: no hardware arithmetic)")
            };
            verdict.reason = format!("{}; {addition}", verdict.reason);
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
