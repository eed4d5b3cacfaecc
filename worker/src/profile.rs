//! Where a result's time went, operator by operator (`--profile`): a few
//! forward() calls after the timed ones, each recorded by the shim through
//! libtorch's RecordFunction callbacks (present in every libtorch build,
//! unlike Kineto), then added up here. For INT8 it also names the
//! operators that still run in floating point.

use crate::context::Context;
use crate::forward::Forward;
use crate::model::TorchError;
use crate::shim::{ProfileSession, ShimError};
use precisiond_core::precision::Precision;
use precisiond_core::report::{OperatorProfile, OperatorTime, PrecisionResult};
use std::collections::HashMap;
use std::time::Instant;
use tch::Tensor;

/// At most this many forward() calls are profiled...
const MAX_CALLS: usize = 10;
/// ... and no more than fit in this share of the time budget (at least one).
const BUDGET_SHARE: f64 = 0.2;

/// Profiles `module` when the job asks for it, into `result` (which must
/// hold its timing: the median decides how many calls fit).
pub fn attach(
    ctx: &Context,
    module: &dyn Forward,
    inputs: &[Tensor],
    result: &mut PrecisionResult,
) {
    if !ctx.job.opts.knobs.profile {
        return;
    }
    if ctx.is_cuda() {
        result.notes.push(
            "no operator profile on a CUDA device: operators there only launch kernels that \
             run later, so their host-side times would not say where the GPU's time went"
                .to_owned(),
        );
        return;
    }
    let Some(median_ms) = result.latency_ms.as_ref().map(|l| l.median) else {
        return;
    };
    let calls = calls_within(median_ms, ctx.job.bench.max_seconds);
    let quantized = result.precision == Precision::Int8;
    match record(module, inputs, calls) {
        Ok(tally) => {
            let profile = tally.profile(quantized);
            if quantized {
                result
                    .notes
                    .push(int8_summary(&profile, tally.converting_share()));
            }
            result.profile = Some(profile);
        }
        Err(e) => result
            .notes
            .push(format!("the operator profile failed: {e}")),
    }
}

/// How many forward() calls of about `median_ms` to profile in a budget of
/// `max_seconds`.
fn calls_within(median_ms: f64, max_seconds: f64) -> usize {
    let fit = (max_seconds * 1e3 * BUDGET_SHARE / median_ms.max(1e-6)).floor();
    (fit as usize).clamp(1, MAX_CALLS)
}

/// `calls` forward() calls, each in its own profile session (so a span
/// between quantize and dequantize never runs from one call into the next).
fn record(module: &dyn Forward, inputs: &[Tensor], calls: usize) -> Result<Tally, ProfileError> {
    let mut tally = Tally::default();
    for _ in 0..calls {
        let session = ProfileSession::start()?;
        let started = Instant::now();
        let outcome = module.run(inputs);
        let wall = started.elapsed();
        let text = session.finish()?;
        drop(outcome?);
        tally.add(&Recording::parse(&text)?, wall.as_nanos() as f64);
    }
    Ok(tally)
}

/// Why there is no operator profile.
#[derive(Debug, thiserror::Error)]
enum ProfileError {
    /// The shim could not start or end a session.
    #[error(transparent)]
    Session(#[from] ShimError),
    #[error(transparent)]
    Call(#[from] TorchError),
    #[error(transparent)]
    Text(#[from] BadRecording),
}

/// The shim's profile text is not what this parser reads.
#[derive(Debug, PartialEq, thiserror::Error)]
enum BadRecording {
    #[error("unexpected line from the shim's profile: {0:?}")]
    Line(String),
    #[error("the shim's profile names an operator it did not list")]
    UnlistedOperator,
}

/// One profile session, as the shim returns it.
#[derive(Debug, Default)]
struct Recording {
    ops: Vec<OpLine>,
    /// Outermost calls in call order: (index into `ops`, total ns).
    outermost: Vec<(usize, i64)>,
}

#[derive(Debug)]
struct OpLine {
    name: String,
    calls: u64,
    total_ns: i64,
    self_ns: i64,
}

impl Recording {
    fn parse(text: &str) -> Result<Recording, BadRecording> {
        let bad = |line: &str| BadRecording::Line(line.to_owned());
        let mut rec = Recording::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["op", name, calls, total, self_ns] => rec.ops.push(OpLine {
                    name: (*name).to_owned(),
                    calls: calls.parse().map_err(|_| bad(line))?,
                    total_ns: total.parse().map_err(|_| bad(line))?,
                    self_ns: self_ns.parse().map_err(|_| bad(line))?,
                }),
                ["top", index, total] => {
                    let index: usize = index.parse().map_err(|_| bad(line))?;
                    rec.outermost
                        .push((index, total.parse().map_err(|_| bad(line))?));
                }
                _ => return Err(bad(line)),
            }
        }
        if rec.outermost.iter().any(|&(i, _)| i >= rec.ops.len()) {
            return Err(BadRecording::UnlistedOperator);
        }
        Ok(rec)
    }
}

/// What an outermost operator of an INT8 model does to the data stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// float -> int8 (aten::quantize_per_tensor, ..._per_channel).
    Quantize,
    /// int8 -> float.
    Dequantize,
    /// A quantized kernel (quantized::linear, quantized::conv2d, ...).
    Quantized,
    /// Anything else: it runs on whatever the stream holds at that point.
    Other,
}

fn role(name: &str) -> Role {
    if name.starts_with("aten::quantize_per_") {
        Role::Quantize
    } else if name == "aten::dequantize" {
        Role::Dequantize
    } else if name.starts_with("quantized::") {
        Role::Quantized
    } else {
        Role::Other
    }
}

/// The outermost calls that ran on floating-point tensors: read in call
/// order, the stream is float at the start and after a dequantize, int8
/// after a quantize or a quantized kernel. (A model with parallel branches
/// can interleave them; call order is what RecordFunction sees.)
fn float_calls<'a>(rec: &'a Recording) -> impl Iterator<Item = (&'a str, i64)> + 'a {
    let mut float_stream = true;
    rec.outermost.iter().filter_map(move |&(index, total_ns)| {
        let name = rec.ops[index].name.as_str();
        match role(name) {
            Role::Dequantize => float_stream = true,
            Role::Quantize | Role::Quantized => float_stream = false,
            Role::Other if float_stream => return Some((name, total_ns)),
            Role::Other => {}
        }
        None
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    calls: u64,
    total_ns: f64,
    self_ns: f64,
}

/// Sums over the profiled forward() calls.
#[derive(Debug, Default)]
struct Tally {
    forward_calls: usize,
    wall_ns: f64,
    ops: HashMap<String, Totals>,
    /// Outermost calls only, by name: float operators and the INT8 summary.
    outermost: HashMap<String, Totals>,
    float: HashMap<String, Totals>,
}

impl Tally {
    fn add(&mut self, rec: &Recording, wall_ns: f64) {
        self.forward_calls += 1;
        self.wall_ns += wall_ns;
        for op in &rec.ops {
            let t = self.ops.entry(op.name.clone()).or_default();
            t.calls += op.calls;
            t.total_ns += op.total_ns as f64;
            t.self_ns += op.self_ns.max(0) as f64;
        }
        for &(index, total_ns) in &rec.outermost {
            let t = self
                .outermost
                .entry(rec.ops[index].name.clone())
                .or_default();
            t.calls += 1;
            t.total_ns += total_ns as f64;
        }
        for (name, total_ns) in float_calls(rec) {
            let t = self.float.entry(name.to_owned()).or_default();
            t.calls += 1;
            t.total_ns += total_ns as f64;
            t.self_ns += total_ns as f64;
        }
    }

    fn profile(&self, quantized: bool) -> OperatorProfile {
        let wall_ns = self.wall_ns.max(1.0);
        let listed = |map: &HashMap<String, Totals>, key: fn(&Totals) -> f64| {
            let mut rows: Vec<(&String, &Totals)> = map.iter().collect();
            rows.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(b.0)));
            rows.into_iter()
                .take(OperatorProfile::TOP)
                .map(|(name, t)| OperatorTime {
                    name: name.clone(),
                    calls: t.calls,
                    self_ms: t.self_ns / 1e6,
                    total_ms: t.total_ns / 1e6,
                    share: key(t) / wall_ns,
                })
                .collect::<Vec<_>>()
        };
        OperatorProfile {
            forward_calls: self.forward_calls,
            wall_ms: self.wall_ns / 1e6,
            operators: listed(&self.ops, |t| t.self_ns),
            float_operators: quantized.then(|| listed(&self.float, |t| t.total_ns)),
        }
    }

    /// The share of the wall time spent converting between float and int8
    /// (outermost quantize and dequantize calls).
    fn converting_share(&self) -> f64 {
        let converting: f64 = self
            .outermost
            .iter()
            .filter(|(name, _)| matches!(role(name), Role::Quantize | Role::Dequantize))
            .map(|(_, t)| t.total_ns)
            .sum();
        converting / self.wall_ns.max(1.0)
    }
}

/// In words, for an INT8 result: how much of the profiled time went to
/// quantized kernels, to converting between float and int8, and to
/// operators that still run in floating point.
fn int8_summary(profile: &OperatorProfile, converting: f64) -> String {
    let float = profile.float_operators.as_deref().unwrap_or_default();
    let percent = |share: f64| format!("{:.1}%", share * 100.0);
    let float_share: f64 = float.iter().map(|o| o.share).sum();
    let listed = if float.is_empty() {
        "no operator runs in floating point between the quantized ones".to_owned()
    } else {
        let names: Vec<String> = float
            .iter()
            .map(|o| format!("{} ({})", o.name, percent(o.share)))
            .collect();
        format!(
            "{} of the profiled time is in operators that still run in floating point \
             (on dequantized tensors, before they are quantized again): {}",
            percent(float_share),
            names.join(", ")
        )
    };
    format!(
        "INT8 operator profile: {listed}; converting between float and int8 \
         (quantize_per_tensor, dequantize) takes {} (see [results.profile])",
        percent(converting)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(ops: &[(&str, u64, i64, i64)], outermost: &[(usize, i64)]) -> Recording {
        Recording {
            ops: ops
                .iter()
                .map(|&(name, calls, total_ns, self_ns)| OpLine {
                    name: name.to_owned(),
                    calls,
                    total_ns,
                    self_ns,
                })
                .collect(),
            outermost: outermost.to_vec(),
        }
    }

    #[test]
    fn the_shims_lines_parse_and_a_wrong_index_is_refused() {
        let rec = Recording::parse(
            "op\taten::addmm\t3\t3000\t2500\nop\taten::t\t3\t500\t500\ntop\t0\t1000\n",
        )
        .unwrap();
        assert_eq!(rec.ops.len(), 2);
        assert_eq!(rec.ops[0].name, "aten::addmm");
        assert_eq!(rec.ops[0].self_ns, 2500);
        assert_eq!(rec.outermost, vec![(0, 1000)]);
        assert_eq!(
            Recording::parse("top\t1\t5\n").unwrap_err(),
            BadRecording::UnlistedOperator
        );
        assert_eq!(
            Recording::parse("op\taten::x\tthree\t1\t1\n").unwrap_err(),
            BadRecording::Line("op\taten::x\tthree\t1\t1".to_owned())
        );
    }

    #[test]
    fn float_operators_are_the_ones_outside_quantize_dequantize_spans() {
        // quantize, qlinear, dequantize, layer_norm (float), quantize,
        // qlinear, aten::relu (on int8), dequantize, softmax (float).
        let rec = recording(
            &[
                ("aten::quantize_per_tensor", 2, 20, 20),
                ("quantized::linear", 2, 200, 200),
                ("aten::dequantize", 2, 20, 20),
                ("aten::layer_norm", 1, 70, 10),
                ("aten::relu", 1, 5, 5),
                ("aten::softmax", 1, 30, 30),
            ],
            &[
                (0, 10),
                (1, 100),
                (2, 10),
                (3, 70),
                (0, 10),
                (1, 100),
                (4, 5),
                (2, 10),
                (5, 30),
            ],
        );
        let float: Vec<(&str, i64)> = float_calls(&rec).collect();
        assert_eq!(float, vec![("aten::layer_norm", 70), ("aten::softmax", 30)]);

        let mut tally = Tally::default();
        tally.add(&rec, 400.0);
        let profile = tally.profile(true);
        let float = profile.float_operators.as_ref().unwrap();
        assert_eq!(float[0].name, "aten::layer_norm");
        assert!((float[0].share - 70.0 / 400.0).abs() < 1e-12);
        // Top by self time: the quantized kernel, then the softmax (30 ns);
        // the layer_norm's own time is 10 ns.
        assert_eq!(profile.operators[0].name, "quantized::linear");
        assert_eq!(profile.operators[1].name, "aten::softmax");
        let shares: f64 = profile.operators.iter().map(|o| o.share).sum();
        assert!((shares - 285.0 / 400.0).abs() < 1e-12, "{shares}");
        let words = int8_summary(&profile, tally.converting_share());
        assert!(words.contains("aten::layer_norm (17.5%)"), "{words}");
        assert!(words.contains("takes 10.0%"), "{words}");
        assert!(
            words.contains("converting between float and int8"),
            "{words}"
        );
    }

    #[test]
    fn a_model_quantized_end_to_end_has_no_float_operators() {
        let rec = recording(
            &[
                ("aten::quantize_per_tensor", 1, 10, 10),
                ("quantized::linear_relu", 1, 50, 50),
                ("aten::dequantize", 1, 10, 10),
            ],
            &[(0, 10), (1, 50), (2, 10)],
        );
        assert_eq!(float_calls(&rec).count(), 0);
        let mut tally = Tally::default();
        tally.add(&rec, 80.0);
        let profile = tally.profile(true);
        assert_eq!(profile.float_operators.as_deref().map(<[_]>::len), Some(0));
        let words = int8_summary(&profile, tally.converting_share());
        assert!(
            words.contains("no operator runs in floating point"),
            "{words}"
        );
        assert!(words.contains("takes 25.0%"), "{words}");
        // Not INT8: no float list at all.
        assert!(tally.profile(false).float_operators.is_none());
    }

    #[test]
    fn the_shim_records_nested_operators_and_removes_its_callback_on_every_path() {
        use tch::{Device, Kind};
        let a = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
        let session = ProfileSession::start().unwrap();
        assert!(ProfileSession::start().is_err(), "one session per thread");
        let _ = a.matmul(&a).relu();
        let rec = Recording::parse(&session.finish().unwrap()).unwrap();
        let op = |name: &str| {
            rec.ops
                .iter()
                .position(|o| o.name == name)
                .unwrap_or_else(|| panic!("{name} not recorded: {rec:?}"))
        };
        let (matmul, mm, relu) = (op("aten::matmul"), op("aten::mm"), op("aten::relu"));
        // aten::mm runs inside aten::matmul: its time is matmul's, not
        // matmul's own, and it is not an outermost call.
        let m = &rec.ops[matmul];
        assert!(m.total_ns >= m.self_ns + rec.ops[mm].total_ns, "{rec:?}");
        let outermost: Vec<usize> = rec.outermost.iter().map(|&(i, _)| i).collect();
        assert_eq!(outermost, vec![matmul, relu], "{rec:?}");

        // Dropped unread, a session still ends: the next one starts clean
        // and records nothing that ran in between.
        {
            let _unread = ProfileSession::start().unwrap();
            let _ = a.relu();
        }
        let _ = a.relu();
        let session = ProfileSession::start().unwrap();
        let rec = Recording::parse(&session.finish().unwrap()).unwrap();
        assert!(rec.ops.is_empty() && rec.outermost.is_empty(), "{rec:?}");
    }

    #[test]
    fn profiled_calls_fit_a_fifth_of_the_budget() {
        assert_eq!(calls_within(0.01, 4.0), MAX_CALLS);
        assert_eq!(calls_within(100.0, 4.0), 8);
        assert_eq!(calls_within(40.0, 0.3), 1);
        assert_eq!(calls_within(5000.0, 0.3), 1);
    }
}
