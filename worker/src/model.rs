//! Loading a TorchScript model, building its inputs and calling it.

use crate::inputs::{self, Inferred, AUDIO_SAMPLES, DEFAULT_IMAGE_SIZE, SEQUENCE_LENGTH};
use precisiond_core::precision::Precision;
use precisiond_core::settings::{DType, InputSpec, EXAMPLE};
use std::path::{Path, PathBuf};
use tch::{CModule, IValue, Kind, Tensor};

/// libtorch's messages carry a C++ stack ("Exception raised from ...") and,
/// for TorchScript, the interpreter's traceback. Users need the last line
/// that says what went wrong; the full text goes to the debug log.
pub fn clean_torch_error(message: impl std::fmt::Display) -> String {
    let message = message.to_string();
    log::debug!("libtorch error, in full: {message}");
    let head = message
        .split("Exception raised from")
        .next()
        .unwrap_or(&message);
    // TorchScript tracebacks end with the Python-style error line.
    let head = match head.rfind("RuntimeError: ") {
        Some(i) => &head[i + "RuntimeError: ".len()..],
        None => head,
    };
    let cleaned = head
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.is_empty() {
        message
            .lines()
            .next()
            .unwrap_or("unknown libtorch error")
            .to_owned()
    } else {
        cleaned
    }
}

/// A libtorch call on a model or tensor that failed: the line of
/// libtorch's message that says what went wrong ([`clean_torch_error`]).
/// The words are libtorch's; only [`sequence_retry`] looks into them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TorchError(pub String);

impl TorchError {
    pub fn from_libtorch(message: impl std::fmt::Display) -> TorchError {
        TorchError(clean_torch_error(message))
    }
}

/// Why a file could not be loaded as TorchScript, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a zip archive at all.
    #[error(
        "{} is not a TorchScript model (TorchScript files are zip archives written by \
         torch.jit.save). Export the model with `torch.jit.script(model).save(\"{}\")` or \
         torch.jit.trace. (libtorch said: {libtorch})",
        file.display(),
        file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    )]
    NotTorchScript { file: PathBuf, libtorch: String },
    /// A zip archive without its end: cut short, or still being copied.
    #[error(
        "{} is an incomplete zip archive: the file is truncated or was still being copied. Copy \
         it again completely. (libtorch said: {libtorch})",
        file.display()
    )]
    Truncated { file: PathBuf, libtorch: String },
    /// A pickled module or state_dict.
    #[error(
        "{} was saved with torch.save (a pickled module or state_dict), not as TorchScript. \
         Export it with `torch.jit.script(model).save(...)`. (libtorch said: {libtorch})",
        file.display()
    )]
    TorchSave { file: PathBuf, libtorch: String },
    #[error("cannot load {} as TorchScript: {libtorch}", file.display())]
    Libtorch { file: PathBuf, libtorch: String },
    #[error("cannot put {} in eval mode: {libtorch}", file.display())]
    EvalMode { file: PathBuf, libtorch: String },
}

/// Tells why a file could not be loaded as TorchScript from its bytes and
/// libtorch's `message`.
pub fn explain_load_error(path: &Path, bytes: &[u8], message: &str) -> LoadError {
    let file = path.to_path_buf();
    let libtorch = clean_torch_error(message);
    if bytes.len() < 4 || &bytes[..4] != b"PK\x03\x04" {
        return LoadError::NotTorchScript { file, libtorch };
    }
    // libtorch's zip reader says "central directory" when the end record
    // is missing; the bytes say it too, when libtorch words it otherwise.
    if !has_zip_end_record(bytes) || message.contains("central directory") {
        return LoadError::Truncated { file, libtorch };
    }
    // torch.save archives hold data.pkl; TorchScript archives also hold
    // constants.pkl and code/. The file names sit in the zip's directory.
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if contains(b"data.pkl") && !contains(b"constants.pkl") {
        return LoadError::TorchSave { file, libtorch };
    }
    LoadError::Libtorch { file, libtorch }
}

/// A complete zip archive ends with an end-of-central-directory record
/// (signature PK\x05\x06, within the last 22 + 65535 bytes); a file cut
/// short, or still being copied, has none.
fn has_zip_end_record(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(22 + 65_535)..];
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

pub fn load(path: &Path, bytes: &[u8]) -> Result<CModule, LoadError> {
    load_on(path, bytes, tch::Device::Cpu)
}

/// [`load`], with every tensor of the model on `device` (libtorch's
/// map_location: all of them move, whatever their type).
pub fn load_on(path: &Path, bytes: &[u8], device: tch::Device) -> Result<CModule, LoadError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let mut module = CModule::load_data_on_device(&mut cursor, device)
        .map_err(|e| explain_load_error(path, bytes, &e.to_string()))?;
    module.f_set_eval().map_err(|e| LoadError::EvalMode {
        file: path.to_path_buf(),
        libtorch: clean_torch_error(e),
    })?;
    Ok(module)
}

/// Infers the model's required inputs (`info.num_required`) from how its
/// forward() uses each one first ([`crate::inputs`]). A single input the
/// graph does not tell is guessed from the model's first weight, as before
/// the graph was read.
pub fn infer_inputs(
    module: &CModule,
    bytes: &[u8],
    info: &crate::shim::ModuleInfo,
    settings_path: &Path,
) -> Result<Vec<Inferred>, CannotInfer> {
    let ask = |why: Uninferable| CannotInfer {
        why,
        settings: settings_path.to_path_buf(),
    };
    let count = info.num_required;
    if count == 0 {
        return Err(ask(Uninferable::NoRequired(info.num_inputs)));
    }
    let (decided, names) = match crate::shim::graph::input_uses(bytes) {
        Ok(uses) if uses.inputs.len() >= count => (
            inputs::infer(&uses, count),
            uses.inputs.iter().map(|u| u.name.clone()).collect(),
        ),
        Ok(uses) => {
            log::warn!(
                "forward()'s graph has {} arguments, its schema {count} required ones",
                uses.inputs.len()
            );
            (Vec::new(), Vec::new())
        }
        Err(e) => {
            log::warn!("cannot read forward()'s graph: {}", clean_torch_error(e));
            (Vec::new(), Vec::new())
        }
    };
    let mut inferred = Vec::with_capacity(count);
    for index in 0..count {
        match decided.get(index) {
            Some(Ok(one)) => inferred.push(one.clone()),
            // One input the graph does not tell: its first weight, as ever.
            _ if count == 1 => {
                let graph_said = match decided.first() {
                    Some(Err(why)) => format!("; the graph did not tell: {why}"),
                    _ => String::new(),
                };
                let (spec, from) = first_weight_input(module).map_err(ask)?;
                inferred.push(Inferred {
                    spec,
                    from: format!("{from}{graph_said}"),
                });
            }
            Some(Err(why)) => {
                return Err(ask(Uninferable::Undecided {
                    argument: index + 1,
                    name: names.get(index).cloned().flatten(),
                    why: why.clone(),
                }))
            }
            None => return Err(ask(Uninferable::GraphUnread(count))),
        }
    }
    for one in &inferred {
        log::info!("inferred input {}: {}", one.spec, one.from);
    }
    Ok(inferred)
}

/// Guesses a model's single input from its first weight: a convolution's
/// weight gives the channel count, a linear layer's the feature count, an
/// embedding's the vocabulary size. With what from, in words.
fn first_weight_input(module: &CModule) -> Result<(InputSpec, String), Uninferable> {
    let params = module
        .named_parameters()
        .map_err(|e| Uninferable::Parameters(clean_torch_error(e)))?;
    let Some((name, weight)) = params
        .iter()
        .find(|(name, t)| name.ends_with("weight") && t.dim() >= 2)
    else {
        return Err(Uninferable::NoWeight);
    };
    let size = weight.size();
    let spec = match size.len() {
        // conv2d weight: [out, in/groups, kh, kw]
        4 => InputSpec {
            name: Some("image".into()),
            shape: vec![1, size[1], DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE],
            dtype: DType::Float32,
            low: None,
            high: None,
        },
        // conv1d weight: [out, in, k]; one channel is audio
        3 => InputSpec {
            name: Some("signal".into()),
            shape: vec![
                1,
                size[1],
                if size[1] == 1 {
                    AUDIO_SAMPLES
                } else {
                    DEFAULT_IMAGE_SIZE
                },
            ],
            dtype: DType::Float32,
            low: None,
            high: None,
        },
        2 if name.contains("embed") => InputSpec {
            name: Some("tokens".into()),
            shape: vec![1, SEQUENCE_LENGTH],
            dtype: DType::Int64,
            low: Some(0.0),
            high: Some(size[0] as f64),
        },
        2 => InputSpec {
            name: Some("features".into()),
            shape: vec![1, size[1]],
            dtype: DType::Float32,
            low: None,
            high: None,
        },
        n => {
            return Err(Uninferable::WeightRank {
                name: name.clone(),
                dims: n,
            })
        }
    };
    Ok((spec, format!("the first weight `{name}` {size:?}")))
}

/// The inputs of a model cannot be guessed: they must be described in its
/// settings file, shown with an example.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot infer the inputs of this model ({why}). Describe them in {}, for example:\n\n{example}\n",
    settings.display(),
    example = EXAMPLE
)]
pub struct CannotInfer {
    pub why: Uninferable,
    /// The settings file to describe them in.
    pub settings: PathBuf,
}

/// What keeps a model's input from being guessed.
#[derive(Debug, thiserror::Error)]
pub enum Uninferable {
    #[error("its forward() takes {0} arguments, each with a default")]
    NoRequired(usize),
    #[error("its forward() takes {0} arguments and its graph could not be read")]
    GraphUnread(usize),
    #[error("forward()'s argument {argument}{}: {why}", name.as_ref().map(|n| format!(" `{n}`")).unwrap_or_default())]
    Undecided {
        /// 1 for the first argument after self.
        argument: usize,
        name: Option<String>,
        why: inputs::Undecided,
    },
    #[error("its parameters cannot be read: {0}")]
    Parameters(String),
    #[error("it has no convolution, linear or embedding weight to read the input size from")]
    NoWeight,
    #[error("its first weight `{name}` has {dims} dimensions")]
    WeightRank { name: String, dims: usize },
}

/// Sequence length of the retried input of a model that wants
/// `[batch, sequence, features]`.
pub const RETRY_SEQUENCE_LENGTH: i64 = SEQUENCE_LENGTH;

/// The one retry of an inferred `[batch, features]` input whose forward()
/// failed with `error`: when the error is about the input's rank (a
/// transformer wants `[batch, sequence, features]`), the same features as a
/// sequence of [`RETRY_SEQUENCE_LENGTH`]. None for any other input or
/// error: those would fail again, and their message is the useful one.
pub fn sequence_retry(spec: &InputSpec, error: &TorchError) -> Option<InputSpec> {
    if spec.shape.len() != 2 || !spec.dtype.is_float() {
        return None;
    }
    // libtorch has no kinds of error to match on, only its words.
    let error = error.0.to_lowercase();
    // libtorch's words for a tensor of the wrong rank: an index past its
    // last dimension, bmm/attention asking for 3-D, TorchScript unpacking
    // a shape into three names.
    let about_rank = [
        "dimension out of range",
        "3d",
        "3-d",
        "expected 3",
        "values to unpack",
        "rank",
    ]
    .iter()
    .any(|words| error.contains(words));
    about_rank.then(|| InputSpec {
        shape: vec![spec.shape[0], RETRY_SEQUENCE_LENGTH, spec.shape[1]],
        ..spec.clone()
    })
}

/// The floating-point kind a model is cast to, for the precisions that are
/// prepared by casting.
pub fn cast_kind(precision: Precision) -> Option<Kind> {
    match precision {
        Precision::Fp32 => Some(Kind::Float),
        Precision::Fp16 => Some(Kind::Half),
        Precision::Bf16 => Some(Kind::BFloat16),
        Precision::Int8 => None,
    }
}

pub fn dtype_kind(dtype: DType) -> Kind {
    match dtype {
        DType::Float32 => Kind::Float,
        DType::Float16 => Kind::Half,
        DType::Bfloat16 => Kind::BFloat16,
        DType::Float64 => Kind::Double,
        DType::Int64 => Kind::Int64,
        DType::Int32 => Kind::Int,
        DType::Int8 => Kind::Int8,
        DType::Uint8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

/// Synthetic inputs for the given specs, reproducible from `seed`.
pub fn synthetic_inputs(specs: &[InputSpec], seed: i64) -> Vec<Tensor> {
    tch::manual_seed(seed);
    specs
        .iter()
        .map(|spec| {
            let opts = (dtype_kind(spec.dtype), tch::Device::Cpu);
            if spec.dtype.is_float() {
                let t = match (spec.low, spec.high) {
                    (Some(low), Some(high)) => {
                        Tensor::rand(&spec.shape, (Kind::Float, tch::Device::Cpu)) * (high - low)
                            + low
                    }
                    _ => Tensor::randn(&spec.shape, (Kind::Float, tch::Device::Cpu)),
                };
                t.to_kind(opts.0)
            } else if spec.dtype == DType::Bool {
                Tensor::randint(2, &spec.shape, (Kind::Int64, tch::Device::Cpu)).to_kind(Kind::Bool)
            } else {
                let low = spec.low.unwrap_or(0.0) as i64;
                let high = spec.high.unwrap_or(2.0) as i64;
                Tensor::randint_low(low, high, &spec.shape, opts)
            }
        })
        .collect()
}

/// Inputs for a model cast to `kind`: floating inputs follow the model,
/// integer inputs (token ids, masks) stay as they are.
pub fn cast_inputs(inputs: &[Tensor], kind: Kind) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|t| {
            if t.is_floating_point() {
                t.to_kind(kind)
            } else {
                t.shallow_clone()
            }
        })
        .collect()
}

pub fn forward(module: &CModule, inputs: &[Tensor]) -> Result<IValue, TorchError> {
    let args: Vec<IValue> = inputs
        .iter()
        .map(|t| IValue::Tensor(t.shallow_clone()))
        .collect();
    module.forward_is(&args).map_err(TorchError::from_libtorch)
}

/// Every tensor in a model's output, in order: tuples, lists and dicts are
/// walked depth first so outputs can be compared one by one.
pub fn output_tensors(value: &IValue) -> Vec<Tensor> {
    let mut out = Vec::new();
    collect_tensors(value, &mut out);
    out
}

fn collect_tensors(value: &IValue, out: &mut Vec<Tensor>) {
    match value {
        IValue::Tensor(t) => out.push(t.shallow_clone()),
        IValue::TensorList(ts) => out.extend(ts.iter().map(Tensor::shallow_clone)),
        IValue::Tuple(items) | IValue::GenericList(items) => {
            items.iter().for_each(|v| collect_tensors(v, out))
        }
        IValue::GenericDict(pairs) => pairs.iter().for_each(|(_, v)| collect_tensors(v, out)),
        _ => {}
    }
}

/// A tensor's values as f64, for accuracy metrics.
pub fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>, TorchError> {
    let flat = t
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Double)
        .contiguous()
        .view(-1);
    Vec::<f64>::try_from(&flat).map_err(TorchError::from_libtorch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rank_error_on_a_float_matrix_input_is_retried_as_a_sequence() {
        let features = InputSpec {
            name: Some("features".into()),
            shape: vec![1, 128],
            dtype: DType::Float32,
            low: None,
            high: None,
        };
        let torch = |message: &str| TorchError(message.to_owned());
        let rank = &torch("Dimension out of range (expected to be in range of [-2, 1], but got 2)");
        let retry = sequence_retry(&features, rank).unwrap();
        assert_eq!(retry.shape, [1, 16, 128]);
        assert_eq!(retry.name, features.name);
        assert!(sequence_retry(&features, &torch("batch1 must be a 3D tensor")).is_some());
        // Another error would fail again: its own message is the useful one.
        let shapes = &torch("mat1 and mat2 shapes cannot be multiplied (1x3 and 64x32)");
        assert!(sequence_retry(&features, shapes).is_none());
        let image = InputSpec {
            shape: vec![1, 3, 224, 224],
            ..features.clone()
        };
        assert!(sequence_retry(&image, rank).is_none());
        let tokens = InputSpec {
            dtype: DType::Int64,
            ..features
        };
        assert!(sequence_retry(&tokens, rank).is_none());
    }

    #[test]
    fn a_file_that_does_not_load_is_told_by_what_it_is() {
        let path = Path::new("/d/m.pt");
        let e = explain_load_error(path, b"GIF89a", "bad magic");
        assert!(matches!(e, LoadError::NotTorchScript { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.starts_with("/d/m.pt is not a TorchScript model"), "{e}");
        assert!(e.contains("torch.jit.script(model).save(\"m.pt\")"), "{e}");
        assert!(e.ends_with("(libtorch said: bad magic)"), "{e}");
        assert!(matches!(
            explain_load_error(path, b"PK\x03\x04cut", "x"),
            LoadError::Truncated { .. }
        ));
        let complete = |names: &[u8]| [b"PK\x03\x04", names, b"PK\x05\x06"].concat();
        assert!(matches!(
            explain_load_error(path, &complete(b"archive/data.pkl"), "x"),
            LoadError::TorchSave { .. }
        ));
        assert!(matches!(
            explain_load_error(path, &complete(b"m/data.pkl m/constants.pkl"), "x"),
            LoadError::Libtorch { .. }
        ));
    }

    #[test]
    fn torch_errors_lose_their_cpp_stack() {
        let raw = "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript (most recent call last):\n  File \"code/__torch__.py\", line 9\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3 and 64x32)\nException raised from foo at bar.cpp:12 (most recent call first):\nframe #0: c10::Error";
        assert_eq!(
            clean_torch_error(raw),
            "mat1 and mat2 shapes cannot be multiplied (1x3 and 64x32)"
        );
    }
}
