//! A micro-benchmark that checks whether libtorch really computes FP16 and
//! BF16 faster than FP32 on a device.
//!
//! CPU flags say what the hardware can do, not what libtorch's kernels make
//! of it: a CPU without avx512_fp16 runs libtorch's FP16 convolution ~30x
//! slower than FP32 (docs/design.md), and on the build machine, which *has*
//! avx512_fp16, oneDNN's FP16 kernels still run a little slower than FP32
//! while BF16 (AMX) runs 2-3x faster. The probe times one GEMM and one
//! convolution per precision and compares them with FP32 on the same device.
//!
//! The timing itself needs libtorch and lives in the worker
//! (worker/src/probe.rs); this module holds its constants,
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
use crate::precision::Precision;

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
/// getting timed rounds, once it has `MIN_CALLS`. An emulated precision
/// (~100 ms per call on the build machine when oneDNN's FP16 kernels are
/// disabled) gets its warm-up calls counted and nothing more; a native one
/// gets every round.
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
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpTimes {
    pub gemm_ms: f64,
    pub conv_ms: f64,
}

/// One precision's probe result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// The whole probe on one device (kept between jobs by
/// [`super::probe_cache`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeReport {
    /// [`crate::devices::Device::slug`]: "cpu", "cuda0", ...
    pub device: String,
    /// libtorch intra-op threads during the probe.
    pub threads: i32,
    pub fp32: OpTimes,
    pub fp16: Result<PrecisionProbe, LaneFailure>,
    pub bf16: Result<PrecisionProbe, LaneFailure>,
    /// Timed calls of each op in FP32 (the minimum is over these).
    pub fp32_calls: usize,
    /// Wall time of the whole probe, tensor creation and warm-up included
    /// (when the caller times it; [`measure`] alone counts its calls' time).
    pub wall_ms: f64,
    /// The cache file this report was read from, when it was not measured
    /// in this job.
    #[serde(skip)]
    pub reused_from: Option<std::path::PathBuf>,
}

/// Why one precision's probe calls failed, in libtorch's words with what
/// was being done (kept with the cached report as that text).
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
#[error("{0}")]
pub struct LaneFailure(pub String);

/// Why the probe has no result at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    /// Its tensors could not be made (libtorch's message).
    #[error("creating probe tensors failed: {0}")]
    Setup(String),
    /// FP32, the reference of every speedup, could not be timed.
    #[error("fp32 probe failed: {0}")]
    Fp32(LaneFailure),
}

/// Every precision gets at least this many timed calls of each op, even
/// past its budget, unless it is slow by itself: under load a single
/// preempted call can take 10-70x the kernel's time (seen on the build
/// machine with other workers running), and with one or two calls the
/// minimum still measures the load, in either direction (FP16 once came out
/// "9x faster" that way).
pub const MIN_CALLS: usize = 3;
/// A precision is slow by itself (an emulated path) when its fastest GEMM +
/// convolution exceeds `PRECISION_BUDGET` *and* is this many times FP32's
/// fastest. Relative, because load slows every precision alike: a loaded
/// FP32 at 70 ms per round is not emulated, FP16 at 100x FP32 is.
pub const SLOW_VS_FP32: f64 = 10.0;
/// Hard cap on the time spent in timed calls, whatever the load: the probe
/// then reports what it has.
pub const PROBE_LIMIT: Duration = Duration::from_millis(1000);

/// The op of one probe call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOp {
    Gemm,
    Conv,
}

/// The precisions the probe times, in the lane order of [`measure`]'s
/// `call`: 0 fp32, 1 fp16, 2 bf16.
pub const PROBE_PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

#[derive(Debug, Clone)]
struct LaneStats {
    gemm_ms: f64,
    conv_ms: f64,
    gemm_calls: usize,
    conv_calls: usize,
    spent_ms: f64,
    error: Option<LaneFailure>,
}

impl LaneStats {
    fn new() -> Self {
        LaneStats {
            gemm_ms: f64::INFINITY,
            conv_ms: f64::INFINITY,
            gemm_calls: 0,
            conv_calls: 0,
            spent_ms: 0.0,
            error: None,
        }
    }

    fn record(&mut self, op: ProbeOp, ms: f64) {
        match op {
            ProbeOp::Gemm => {
                self.gemm_ms = self.gemm_ms.min(ms);
                self.gemm_calls += 1;
            }
            ProbeOp::Conv => {
                self.conv_ms = self.conv_ms.min(ms);
                self.conv_calls += 1;
            }
        }
    }

    fn calls(&self) -> usize {
        self.gemm_calls.min(self.conv_calls)
    }

    fn has_both(&self) -> bool {
        self.gemm_ms.is_finite() && self.conv_ms.is_finite()
    }

    /// Fastest GEMM + convolution so far (infinite before both ran).
    fn round_ms(&self) -> f64 {
        self.gemm_ms + self.conv_ms
    }

    /// Slow by itself: see [`SLOW_VS_FP32`]. `fp32_round_ms` is FP32's
    /// fastest round (infinite while unknown: then nothing is slow).
    fn slow(&self, fp32_round_ms: f64) -> bool {
        let budget = PRECISION_BUDGET.as_secs_f64() * 1e3;
        self.has_both()
            && self.round_ms() > budget
            && self.round_ms() > SLOW_VS_FP32 * fp32_round_ms
    }

    fn done(&self, fp32_round_ms: f64) -> bool {
        let budget = PRECISION_BUDGET.as_secs_f64() * 1e3;
        self.error.is_some()
            || self.calls() >= MAX_ROUNDS
            || (self.has_both()
                && self.spent_ms >= budget
                && (self.calls() >= MIN_CALLS || self.slow(fp32_round_ms)))
    }

    fn result(&self) -> Result<OpTimes, LaneFailure> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if !self.has_both() {
            return Err(LaneFailure("no timed call completed".to_string()));
        }
        Ok(OpTimes {
            gemm_ms: self.gemm_ms,
            conv_ms: self.conv_ms,
        })
    }
}

/// The probe's measurement policy, without libtorch: `call(lane, op)` runs
/// one op in one precision (lanes as in [`PROBE_PRECISIONS`]), synchronised
/// on a GPU, and returns its wall time in milliseconds. The worker supplies
/// the libtorch calls; tests supply synthetic times.
///
/// - Warm-up: one uncounted call per lane and op (kernel creation, first
///   touch of memory), counted only when it alone exceeds the budget.
/// - Rounds interleave the lanes (fp32, fp16, bf16, fp32, ...), each op
///   keeping its minimum, so load hits all precisions alike and a
///   preempted call does not count.
/// - A lane stops after `MAX_ROUNDS` calls, or once past its budget with
///   `MIN_CALLS` calls (or one call, when it is slow by itself: an emulated
///   precision); no lane gets a new round after `ROUNDS_TIME` unless it
///   still lacks `MIN_CALLS`, and nothing runs past `PROBE_LIMIT` but each
///   lane's first timed call of each op (a lane the warm-up left without
///   one would otherwise have no result, and FP32's absence fails the probe).
///
/// Time is the sum of the calls' own times, so the policy is deterministic
/// for a given sequence of times. Fails only when FP32 cannot be measured.
pub fn measure(
    device: impl Into<String>,
    threads: i32,
    mut call: impl FnMut(usize, ProbeOp) -> Result<f64, LaneFailure>,
) -> Result<ProbeReport, ProbeError> {
    let ops = [ProbeOp::Gemm, ProbeOp::Conv];
    let mut lanes: Vec<LaneStats> = (0..PROBE_PRECISIONS.len())
        .map(|_| LaneStats::new())
        .collect();
    let mut clock_ms = 0.0;
    let budget_ms = PRECISION_BUDGET.as_secs_f64() * 1e3;
    let limit_ms = PROBE_LIMIT.as_secs_f64() * 1e3;

    for (i, lane) in lanes.iter_mut().enumerate() {
        for op in ops {
            if lane.error.is_some() {
                break;
            }
            match call(i, op) {
                Ok(ms) => {
                    clock_ms += ms;
                    lane.spent_ms += ms;
                    if ms > budget_ms {
                        lane.record(op, ms);
                    }
                }
                Err(e) => lane.error = Some(e),
            }
        }
    }

    let rounds_end_ms = clock_ms + ROUNDS_TIME.as_secs_f64() * 1e3;
    // A lane without one timed call of each op has no result at all, so it
    // gets its first round even past the limit: under load the warm-up alone
    // can spend the limit (an emulated FP16 at several times its 100 ms),
    // and stopping there would fail the whole probe with "no timed call
    // completed" on a machine that merely was busy.
    let unmeasured = |lanes: &[LaneStats]| {
        lanes
            .iter()
            .any(|lane| lane.error.is_none() && !lane.has_both())
    };
    while clock_ms < limit_ms || unmeasured(&lanes) {
        let mut ran = false;
        for i in 0..lanes.len() {
            let fp32_round_ms = lanes[0].round_ms();
            let lane = &mut lanes[i];
            let past_rounds = clock_ms >= rounds_end_ms;
            if lane.done(fp32_round_ms)
                || (past_rounds && (lane.calls() >= MIN_CALLS || lane.slow(fp32_round_ms)))
            {
                continue;
            }
            if clock_ms >= limit_ms && lane.has_both() {
                continue;
            }
            ran = true;
            for op in ops {
                match call(i, op) {
                    Ok(ms) => {
                        clock_ms += ms;
                        lane.spent_ms += ms;
                        lane.record(op, ms);
                    }
                    Err(e) => {
                        lane.error = Some(e);
                        break;
                    }
                }
            }
        }
        if !ran {
            break;
        }
    }

    let fp32 = lanes[0].result().map_err(ProbeError::Fp32)?;
    let compare = |lane: &LaneStats| -> Result<PrecisionProbe, LaneFailure> {
        let times = lane.result()?;
        Ok(PrecisionProbe {
            times,
            speedup_vs_fp32: ((fp32.gemm_ms / times.gemm_ms) * (fp32.conv_ms / times.conv_ms))
                .sqrt(),
            calls: lane.calls().max(1),
        })
    };
    Ok(ProbeReport {
        device: device.into(),
        threads,
        fp32,
        fp16: compare(&lanes[1]),
        bf16: compare(&lanes[2]),
        fp32_calls: lanes[0].calls().max(1),
        wall_ms: clock_ms,
        reused_from: None,
    })
}

/// Writes a probe outcome into a verdict: sets `probe_speedup_vs_fp32`,
/// `accelerated` and `probe_note`, and adds what the probe showed to the
/// reason when it contradicts or qualifies the flags.
pub fn apply(
    verdict: &mut Verdict,
    precision: Precision,
    fp32: &OpTimes,
    result: &Result<PrecisionProbe, LaneFailure>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Warm-up calls just under the budget each, FP16 several times slower
    /// than that: the warm-up alone spends `PROBE_LIMIT` (the build machine
    /// under a load average of 10), and each precision still gets one timed
    /// call of each op instead of "fp32 probe failed: no timed call
    /// completed".
    #[test]
    fn a_warm_up_past_the_limit_still_times_each_precision_once() {
        let budget_ms = PRECISION_BUDGET.as_secs_f64() * 1e3;
        let limit_ms = PROBE_LIMIT.as_secs_f64() * 1e3;
        let mut calls = Vec::new();
        let report = measure("cpu", 1, |lane, op| {
            calls.push((lane, op));
            Ok(match lane {
                1 => limit_ms / 2.0,
                _ => budget_ms * 0.9,
            })
        })
        .unwrap();
        assert_eq!(report.fp32.gemm_ms, budget_ms * 0.9);
        assert_eq!(report.fp32_calls, 1);
        assert_eq!(report.fp16.as_ref().unwrap().calls, 1);
        assert_eq!(report.bf16.as_ref().unwrap().calls, 1);
        // Warm-up (6 calls) plus one round of the lanes the warm-up left
        // unmeasured: FP16's warm-up calls were over the budget and count.
        assert_eq!(calls.len(), 6 + 2 + 2, "{calls:?}");
        assert!(report.wall_ms > limit_ms);
    }

    /// The limit still holds for every round after a lane's first.
    #[test]
    fn past_the_limit_no_lane_gets_a_second_round() {
        let limit_ms = PROBE_LIMIT.as_secs_f64() * 1e3;
        let mut calls = 0;
        let report = measure("cpu", 1, |_, _| {
            calls += 1;
            Ok(limit_ms / 4.0)
        })
        .unwrap();
        // Every warm-up call is over the budget, so counted; no rounds.
        assert_eq!(calls, 6);
        assert_eq!(report.fp32_calls, 1);
    }
}
