//! The one path every libtorch-run result is compared with FP32 on:
//! output by output, with the library's metrics (`precisiond_core::accuracy`).

use crate::forward::Forward;
use crate::model;
use precisiond_core::accuracy::{self, Absence, Accuracy, OutputAccuracy};
use tch::Tensor;

/// Accuracy of `outputs` against the FP32 `reference`, output by output.
pub fn outputs(reference: &[Tensor], outputs: &[Tensor]) -> Accuracy {
    if reference.len() != outputs.len() {
        let why = format!(
            "the model returned {} tensors, FP32 returned {}",
            outputs.len(),
            reference.len()
        );
        return Accuracy::absent(Absence::Mismatch, &why);
    }
    let mut per_output = Vec::new();
    let mut top1 = None;
    for (index, (r, o)) in reference.iter().zip(outputs).enumerate() {
        match (model::to_f64_vec(r), model::to_f64_vec(o)) {
            (Ok(rv), Ok(ov)) => {
                if index == 0 && r.dim() == 2 {
                    top1 = accuracy::top1_agreement(&rv, &ov, r.size()[1] as usize);
                }
                per_output.push(accuracy::compare_values(&rv, &ov));
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = OutputAccuracy::default();
                acc.mark_absent(
                    "cosine",
                    Absence::Unreadable,
                    format!("cannot read the output: {e}"),
                );
                per_output.push(acc);
            }
        }
    }
    accuracy::combine(per_output, top1)
}

/// Accuracy of `candidate` against `fp32` over several samples: output i
/// of every sample is stacked along the batch dimension, so each output is
/// compared over all samples at once.
pub fn on_samples(
    fp32: &dyn Forward,
    candidate: &dyn Forward,
    samples: &[Vec<Tensor>],
) -> Accuracy {
    let mut reference: Vec<Vec<Tensor>> = Vec::new();
    let mut measured: Vec<Vec<Tensor>> = Vec::new();
    for inputs in samples {
        match (fp32.run(inputs), candidate.run(inputs)) {
            (Ok(r), Ok(o)) => {
                reference.push(r);
                measured.push(o);
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = Accuracy::default();
                acc.worst.mark_absent(
                    "cosine",
                    Absence::ForwardFailed,
                    format!("forward() failed on a held-out sample: {e}"),
                );
                return acc;
            }
        }
    }
    outputs(&stack(&reference), &stack(&measured))
}

fn stack(runs: &[Vec<Tensor>]) -> Vec<Tensor> {
    let n = runs.first().map_or(0, Vec::len);
    (0..n)
        .map(|i| {
            let parts: Vec<Tensor> = runs
                .iter()
                .filter_map(|r| r.get(i).map(Tensor::shallow_clone))
                .collect();
            if parts.iter().all(|t| t.dim() > 0) {
                Tensor::cat(&parts, 0)
            } else {
                Tensor::stack(&parts, 0)
            }
        })
        .collect()
}
