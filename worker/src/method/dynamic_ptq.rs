//! INT8 on the CPU by dynamic post-training quantization: int8 weights,
//! activations quantized at run time by the kernels (each call chooses its
//! own range), through libtorch's graph-mode passes in dynamic mode (what
//! PyTorch's `quantize_dynamic_jit` does; see csrc/shim.cpp). It needs no
//! calibration. It is measured beside static PTQ wherever the model has a
//! linear layer (`crate::plan::comparisons_for`): transformers, MLP heads,
//! and the Linear layers around recurrent ones, which static quantization
//! leaves to FP32 or refuses. The passes run in the same child process as
//! static PTQ's (`crate::quantize`), and the quantized model is kept in
//! the state folder beside the static one.
//!
//! libtorch's graph-mode passes quantize only linear layers dynamically:
//! LSTM, GRU and convolutions stay FP32, and the result's notes say which
//! layers ran in INT8 and which did not. (libtorch has dynamic int8
//! recurrent kernels, `aten::quantized_lstm` and `aten::quantized_gru` over
//! `quantized::make_quantized_cell_params_dynamic`, which PyTorch's eager
//! `nn.quantized.dynamic.LSTM` calls; no graph pass rewrites `aten::lstm`
//! into them.)

use super::static_ptq::{load_artefact, model_name, quantized_engine, report_relative};
use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::{Context, ModelKind};
use crate::quantize::{self, QuantMode, QuantizeJob};
use crate::shim::{self, OpKinds};
use precisiond_core::fsutil::ensure_state_subdir;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};
use precisiond_core::state_files;
use tch::Tensor;

pub struct DynamicPtq;

impl PrecisionMethod for DynamicPtq {
    fn method(&self) -> Method {
        Method::DynamicPtq
    }

    fn applies(&self, ctx: &Context) -> bool {
        ctx.model.kind == ModelKind::TorchScript
            && match shim::forward_kinds(&ctx.model.bytes) {
                Ok(kinds) => suits(&kinds),
                Err(e) => {
                    log::debug!("cannot read the model's forward graph: {e}");
                    false
                }
            }
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let fail = |why: String| ctx.failed(precision, Method::DynamicPtq, why);
        let engine = quantized_engine(ctx, precision, Method::DynamicPtq)?;
        let with_engine = |mut r: PrecisionResult| {
            r.engine = Some(engine.clone());
            r
        };
        let job = ctx.job;
        // Checked (no link, ours) before anything is written there.
        let dir = ensure_state_subdir(&ctx.model.state_dir, state_files::QUANTIZED_DIR)
            .map_err(|e| fail(e.to_string()))?;
        let sha256 = ctx.model.sha256.clone();
        let artefact = state_files::dynamic_quantized_model(&dir, model_name(ctx), &sha256);
        let done = quantize::run_child(
            &QuantizeJob {
                mode: QuantMode::Dynamic,
                model_sha256: sha256,
                out: artefact.clone(),
                engine: engine.clone(),
                threads: job.opts.knobs.threads,
                inputs: job.specs.to_vec(),
                calibration: None,
                calibration_dir: None,
                op_libraries: crate::libs::loaded_op_libraries(),
            },
            &ctx.model.bytes,
        )
        .map_err(|e| with_engine(fail(e.to_string())))?;
        let warnings: Vec<String> = done
            .warnings
            .iter()
            .map(|w| format!("libtorch warned: {w}"))
            .collect();
        if let Some(e) = &done.error {
            let mut result = with_engine(fail(format!("dynamic quantization failed: {e}")));
            result.notes.extend(warnings);
            return Err(result);
        }
        let quantized = load_artefact(&artefact).map_err(|e| with_engine(fail(e)))?;

        let mut result =
            with_engine(ctx.result(precision, Status::Ok, Method::DynamicPtq, String::new()));
        result.quantization_seconds = Some(done.seconds);
        result.quantized_model = Some(report_relative(&artefact, &job.opts.report));
        result.notes.push(layers_note(&done.kinds));
        result.notes.extend(done.inlined_note());
        result.notes.extend(warnings);
        Ok(Prepared::Module(Runnable {
            module: ModuleRef::Owned(Box::new(quantized)),
            inputs: ctx.inputs.iter().map(Tensor::shallow_clone).collect(),
            // No calibration: the timing inputs are as unseen as any.
            comparison: Comparison::Reference,
            result,
        }))
    }
}

/// Whether dynamic PTQ suits a model, by its forward graph's (inlined)
/// node kinds: it has a linear layer (`nn.Linear` and `F.linear` are both
/// `aten::linear` in TorchScript), and either a recurrent layer (which
/// static PTQ cannot take; the linear layers around it are what INT8 can
/// speed up) or at least as many linear layers as convolutions (a
/// transformer, an MLP, ConvNeXt's pointwise layers), not a CNN whose one
/// linear layer is its classifier.
fn suits(kinds: &OpKinds) -> bool {
    let count = |names: &[&str]| -> u64 { names.iter().filter_map(|k| kinds.get(*k)).sum() };
    let linear = count(&["aten::linear"]);
    let recurrent = count(&[
        "aten::lstm",
        "aten::gru",
        "aten::rnn_tanh",
        "aten::rnn_relu",
        "aten::lstm_cell",
        "aten::gru_cell",
    ]);
    let convolutions = count(&[
        "aten::_convolution",
        "aten::conv1d",
        "aten::conv2d",
        "aten::conv3d",
        "aten::conv_transpose1d",
        "aten::conv_transpose2d",
        "aten::conv_transpose3d",
    ]);
    linear > 0 && (recurrent > 0 || linear >= convolutions)
}

/// The layers the dynamic quantizer ran in INT8, by their kernels.
const INT8_LAYERS: [(&str, &str); 2] = [
    ("quantized::linear_dynamic", "linear"),
    ("quantized::linear_relu_dynamic", "linear+relu"),
];

/// The layers it left in FP32: libtorch's graph-mode dynamic quantization
/// has no pattern for them (or, for a linear layer, did not match it).
const FLOAT_LAYERS: [(&str, &str); 13] = [
    ("aten::linear", "linear"),
    ("aten::lstm", "LSTM"),
    ("aten::gru", "GRU"),
    ("aten::rnn_tanh", "RNN"),
    ("aten::rnn_relu", "RNN"),
    ("aten::lstm_cell", "LSTM cell"),
    ("aten::gru_cell", "GRU cell"),
    ("aten::_convolution", "convolution"),
    ("aten::conv1d", "convolution"),
    ("aten::conv2d", "convolution"),
    ("aten::conv3d", "convolution"),
    ("aten::matmul", "matmul"),
    ("aten::bmm", "matmul"),
];

/// Tallies `kinds` into "N name" phrases, in `table`'s order, each name once.
fn tally(kinds: &OpKinds, table: &[(&str, &'static str)]) -> Vec<String> {
    let mut counts: Vec<(&'static str, u64)> = Vec::new();
    for (kind, name) in table {
        let Some(&n) = kinds.get(*kind) else { continue };
        match counts.iter_mut().find(|(seen, _)| seen == name) {
            Some((_, total)) => *total += n,
            None => counts.push((name, n)),
        }
    }
    counts
        .into_iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect()
}

/// Which layers ran in INT8 and which stayed FP32, for the result's notes.
fn layers_note(kinds: &OpKinds) -> String {
    let int8 = tally(kinds, &INT8_LAYERS);
    let float = tally(kinds, &FLOAT_LAYERS);
    let int8 = if int8.is_empty() {
        "none".to_owned()
    } else {
        int8.join(", ")
    };
    let mut note = format!(
        "dynamic quantization: in INT8 (int8 weights, activations quantized per call): {int8}"
    );
    if !float.is_empty() {
        note.push_str(&format!(
            "; left in FP32 (libtorch's graph-mode dynamic quantization covers linear layers \
             only): {}",
            float.join(", ")
        ));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(pairs: &[(&str, u64)]) -> OpKinds {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    }

    #[test]
    fn the_note_names_the_layers_in_int8_and_those_left_in_fp32() {
        let quantized = kinds(&[
            ("quantized::linear_dynamic", 2),
            ("aten::lstm", 1),
            ("aten::conv1d", 1),
            ("aten::_convolution", 2),
            ("aten::relu", 3),
        ]);
        assert_eq!(
            layers_note(&quantized),
            "dynamic quantization: in INT8 (int8 weights, activations quantized per call): 2 \
             linear; left in FP32 (libtorch's graph-mode dynamic quantization covers linear \
             layers only): 1 LSTM, 3 convolution"
        );
        let all = kinds(&[("quantized::linear_dynamic", 1)]);
        assert!(!layers_note(&all).contains("FP32"), "{}", layers_note(&all));
    }

    #[test]
    fn it_suits_models_whose_compute_is_in_linear_layers() {
        // Linear layers around an LSTM, even beside convolutions.
        assert!(suits(&kinds(&[
            ("aten::linear", 1),
            ("aten::lstm", 1),
            ("aten::_convolution", 3)
        ])));
        // A transformer (a ViT's one patch convolution), an MLP.
        assert!(suits(&kinds(&[
            ("aten::linear", 48),
            ("aten::_convolution", 1)
        ])));
        assert!(suits(&kinds(&[("aten::linear", 3)])));
        // A CNN with a linear classifier; no linear layer at all.
        assert!(!suits(&kinds(&[
            ("aten::linear", 1),
            ("aten::_convolution", 20)
        ])));
        assert!(!suits(&kinds(&[("aten::lstm", 1)])));
        assert!(!suits(&kinds(&[("aten::conv2d", 4)])));
    }
}
