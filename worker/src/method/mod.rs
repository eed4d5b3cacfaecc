//! The ways of preparing a model for one (device, precision), one module
//! each, behind one trait: which of them serves which precision is
//! `crate::plan`'s decision; timing (`crate::timing`) and the comparison
//! with FP32 (`crate::compare`) are the same for all of them.
//!
//! - [`cast::Cast`]: FP32/FP16/BF16, the model cast (and moved) as it is;
//! - [`autocast::Autocast`]: FP16/BF16 beside the cast, the FP32 model run
//!   under libtorch's autocast;
//! - [`static_ptq::StaticPtq`]: INT8 on the CPU through libtorch's
//!   graph-mode static post-training quantization;
//! - [`dynamic_ptq::DynamicPtq`]: INT8 on the CPU through its dynamic
//!   mode (int8 weights, activations quantized per call), beside static;
//! - [`prequantized::Prequantized`]: a model already quantized, as it is;
//! - [`tensorrt::Tensorrt`]: INT8 (and FP16/BF16 beside libtorch's) on a
//!   CUDA device through TensorRT's trtexec;
//! - [`aoti::Aoti`]: an AOTInductor package compiled for the precision.

pub mod aoti;
pub mod autocast;
pub mod cast;
pub mod dynamic_ptq;
pub mod prequantized;
pub mod static_ptq;
pub mod tensorrt;

use crate::context::Context;
use crate::forward::Forward;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult};
use tch::Tensor;

/// One way of preparing a model for a precision on a device.
pub trait PrecisionMethod {
    /// The method's name in the report.
    fn method(&self) -> Method;

    /// Whether it applies to `ctx`'s model at all, where it is measured
    /// beside the planned method (`crate::plan::comparisons_for`): a method
    /// that does not apply adds no result.
    fn applies(&self, _ctx: &Context) -> bool {
        true
    }

    /// Prepares the job's model for `precision` on `ctx`'s device. Err: a
    /// result that says why it was not measured (unsupported, failed).
    /// Results are made once per precision: their size does not matter.
    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult>;
}

/// What a method hands back to be timed.
pub enum Prepared<'a> {
    /// A module libtorch runs: timed by `crate::timing`, compared by
    /// `crate::compare`.
    Module(Runnable<'a>),
    /// Timed by an outside tool that reports its own latencies (trtexec):
    /// the finished result.
    Measured(PrecisionResult),
}

/// A module ready to time, its inputs, and how to judge its outputs.
pub struct Runnable<'a> {
    pub module: ModuleRef<'a>,
    /// The job's inputs in the precision's types, on the device.
    pub inputs: Vec<Tensor>,
    pub comparison: Comparison,
    /// The result so far: status ok, the method, and the facts the method
    /// adds (engine, calibration, artefact, notes).
    pub result: PrecisionResult,
}

/// The model as loaded (CPU FP32, a prequantized model) or a prepared copy.
pub enum ModuleRef<'a> {
    Borrowed(&'a dyn Forward),
    Owned(Box<dyn Forward>),
}

impl<'a> std::ops::Deref for ModuleRef<'a> {
    type Target = dyn Forward + 'a;

    fn deref(&self) -> &Self::Target {
        match self {
            ModuleRef::Borrowed(m) => *m,
            ModuleRef::Owned(m) => m.as_ref(),
        }
    }
}

/// What a prepared module's outputs are compared with.
pub enum Comparison {
    /// Its outputs on the timing inputs against FP32's on the CPU.
    Reference,
    /// FP32's and its outputs on these samples (INT8's held-out
    /// calibration samples, on the CPU).
    Samples(Vec<Vec<Tensor>>),
    /// Not compared: it is the reference itself, or there is no FP32
    /// version of it.
    None,
}
