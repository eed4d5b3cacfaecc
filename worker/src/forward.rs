//! One call of a model, whatever runs it: a TorchScript module (tch's
//! `CModule`) or an AOTInductor package (`shim::AotiPackage`). Timing,
//! comparison and profiling go through this one trait, so both runtimes
//! are measured on the same path.

use crate::model::{self, TorchError};
use crate::shim::AotiPackage;
use tch::{CModule, Tensor};

pub trait Forward {
    /// Every output tensor of one call on `inputs`, in order.
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TorchError>;
}

impl Forward for CModule {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TorchError> {
        model::forward(self, inputs).map(|out| model::output_tensors(&out))
    }
}

impl Forward for AotiPackage {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TorchError> {
        AotiPackage::run(self, inputs).map_err(TorchError::from_libtorch)
    }
}
