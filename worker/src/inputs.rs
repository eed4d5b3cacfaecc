//! Each input of a TorchScript model inferred from how forward() uses it
//! first. The shim reads the use from the inlined forward graph
//! ([`crate::shim::graph`]); what that makes the input is decided here:
//!
//! * an embedding (aten::embedding, or index_select/index on a weight):
//!   int64 token ids below the vocabulary size, `[1, L]`, where L is
//!   [`SEQUENCE_LENGTH`], or fewer when a table of positions (an embedding
//!   indexed by aten::arange, or named for positions) has fewer rows;
//! * a convolution: the rank and channel count of its weight, with
//!   [`DEFAULT_IMAGE_SIZE`] for each spatial size (a 3-D convolution gets
//!   [`VIDEO_FRAMES`] frames of it; a 1-channel 1-D signal, audio,
//!   [`AUDIO_SAMPLES`] samples);
//! * a linear layer: `[1, in_features]`, or `[1, L, in_features]` when
//!   forward() unpacks the input's size into three, or `[1, 1, L,
//!   in_features]` when the operators after the layer imply rank 4 (a
//!   squeeze(1) then an LSTM);
//! * an STFT (aten::stft): a waveform of [`AUDIO_SAMPLES`], `[1, T]`;
//!
//! Where view operators between the input and its deciding operator change
//! the rank by a known amount (`x[:, None]`, unsqueeze, squeeze(dim),
//! flatten), the input gets its own rank: size-1 dimensions dropped from
//! the front, or added there.
//! * a recurrent layer: `[1, L, input_size]` (batch_first) or
//!   `[L, 1, input_size]`;
//! * a LayerNorm: `[1, *normalized_shape]`;
//! * used in arithmetic with another tensor (an attention mask) beside
//!   inferred token ids: ones of the ids' shape, int64 (nothing masked).
//!
//! An input none of these decides stays undecided; the caller falls back to
//! the first weight or asks for a settings file.

use crate::shim::graph::{EmbeddingTable, GraphUses, InputUse, UseKind};
use precisiond_core::settings::{DType, InputSpec};

/// Height and width of an inferred image, samples of an inferred signal.
pub const DEFAULT_IMAGE_SIZE: i64 = 224;

/// Tokens or steps of an inferred sequence, when nothing in the model
/// bounds it lower.
pub const SEQUENCE_LENGTH: i64 = 16;

/// Frames of an inferred video (a 3-D convolution's input).
pub const VIDEO_FRAMES: i64 = 16;

/// Samples of an inferred waveform (a 1-channel signal, the input of an
/// STFT): one second at 16 kHz, the rate speech models are trained at.
/// Long enough for wav2vec2's convolution stack, which needs 400.
pub const AUDIO_SAMPLES: i64 = 16_000;

/// An input inferred from the model, and what from, in words for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub spec: InputSpec,
    pub from: String,
}

/// Why one input could not be inferred from the graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecided {
    #[error("no operator in forward() tells its shape")]
    NoTellingUse,
    #[error("it is first used in {0}, which does not tell its shape")]
    StoppedAt(String),
    #[error("it goes to {op}, whose weight could not be read")]
    NoWeight { op: String },
    #[error("it goes to {op}, whose weight has the shape {shape:?}")]
    WeightShape { op: String, shape: Vec<i64> },
    #[error(
        "it is used in {0} with another tensor, and no token ids were inferred to give it a shape"
    )]
    LoneArithmetic(String),
}

/// The first `count` inputs of the model `uses` describes, each inferred
/// or why not.
pub fn infer(uses: &GraphUses, count: usize) -> Vec<Result<Inferred, Undecided>> {
    let mut inferred: Vec<Result<Inferred, Undecided>> = uses
        .inputs
        .iter()
        .take(count)
        .map(|u| decide(u, &uses.embedding_tables))
        .collect();
    // A mask has the shape of the token ids it masks; ones mask nothing.
    let ids = inferred.iter().find_map(|i| match i {
        Ok(Inferred { spec, .. }) if spec.dtype == DType::Int64 && spec.shape.len() == 2 => {
            Some((spec.shape.clone(), spec.name.clone()))
        }
        _ => None,
    });
    for (slot, u) in inferred.iter_mut().zip(&uses.inputs) {
        if let Err(Undecided::LoneArithmetic(op)) = slot {
            if let Some((shape, ids_name)) = &ids {
                *slot = Ok(Inferred {
                    spec: InputSpec {
                        name: Some(u.name.clone().unwrap_or_else(|| "mask".into())),
                        shape: shape.clone(),
                        dtype: DType::Int64,
                        low: Some(1.0),
                        high: Some(2.0),
                    },
                    from: format!(
                        "ones (nothing masked) of the shape of the token ids `{}`: forward() uses \
                         it in {op} with another tensor, as an attention mask",
                        ids_name.as_deref().unwrap_or("?")
                    ),
                });
            }
        }
    }
    inferred
}

/// One input from its first use, without looking at the others.
fn decide(u: &InputUse, tables: &[EmbeddingTable]) -> Result<Inferred, Undecided> {
    let op = u.op.clone().unwrap_or_default();
    let shape = match u.kind {
        UseKind::Undecided => {
            return Err(match &u.op {
                Some(op) => Undecided::StoppedAt(op.clone()),
                None => Undecided::NoTellingUse,
            })
        }
        UseKind::Arithmetic => return Err(Undecided::LoneArithmetic(op)),
        UseKind::Waveform => Vec::new(),
        _ => u
            .weight_shape
            .clone()
            .ok_or_else(|| Undecided::NoWeight { op: op.clone() })?,
    };
    let bad_shape = || Undecided::WeightShape {
        op: op.clone(),
        shape: shape.clone(),
    };
    let weight = match &u.weight {
        Some(name) => format!("`{name}` {shape:?}"),
        None => format!("{shape:?}"),
    };
    let name = |kind: &str| Some(u.name.clone().unwrap_or_else(|| kind.to_owned()));
    let float = |kind: &str, dims: Vec<i64>| InputSpec {
        name: name(kind),
        shape: dims,
        dtype: DType::Float32,
        low: None,
        high: None,
    };
    let (spec, from) = match u.kind {
        UseKind::Embedding => {
            let dim = if u.dim < 0 {
                u.dim + shape.len() as i64
            } else {
                u.dim
            };
            let vocabulary = *usize::try_from(dim)
                .ok()
                .and_then(|d| shape.get(d))
                .filter(|&&v| v > 0)
                .ok_or_else(bad_shape)?;
            let (length, why_length) = sequence_length(tables, u.weight.as_deref());
            let spec = InputSpec {
                name: name("tokens"),
                shape: vec![1, length],
                dtype: DType::Int64,
                low: Some(0.0),
                high: Some(vocabulary as f64),
            };
            let from = format!(
                "token ids below the vocabulary size {vocabulary}, from the embedding {weight} \
                 ({op}); {why_length}"
            );
            (spec, from)
        }
        UseKind::Convolution => {
            if !(3..=5).contains(&shape.len()) {
                return Err(bad_shape());
            }
            let channels = if u.transposed {
                shape[0]
            } else {
                shape[1] * u.groups
            };
            let (kind, spatial, default): (&str, Vec<i64>, String) = match shape.len() {
                3 if channels == 1 => (
                    "waveform",
                    vec![AUDIO_SAMPLES],
                    format!(
                        "{AUDIO_SAMPLES} samples by default (one second of 16 kHz audio, as a \
                         1-channel signal is audio)"
                    ),
                ),
                3 => (
                    "signal",
                    vec![DEFAULT_IMAGE_SIZE],
                    format!("{DEFAULT_IMAGE_SIZE} samples by default"),
                ),
                4 => (
                    "image",
                    vec![DEFAULT_IMAGE_SIZE; 2],
                    format!("{DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE} by default"),
                ),
                _ => (
                    "video",
                    vec![VIDEO_FRAMES, DEFAULT_IMAGE_SIZE / 2, DEFAULT_IMAGE_SIZE / 2],
                    format!(
                        "{VIDEO_FRAMES} frames of {0}x{0} by default",
                        DEFAULT_IMAGE_SIZE / 2
                    ),
                ),
            };
            let dims = [vec![1, channels], spatial].concat();
            let (dims, reshaped) = own_rank(dims, u.rank_change);
            let from = format!(
                "{} of {channels} channel{}, from the convolution {weight} ({op}); \
                 {default}{reshaped}",
                article(kind),
                if channels == 1 { "" } else { "s" }
            );
            (float(kind, dims), from)
        }
        UseKind::Linear => {
            if shape.len() != 2 {
                return Err(bad_shape());
            }
            let features = if u.transposed { shape[0] } else { shape[1] };
            let (dims, sequence) = if u.rank == Some(3) {
                (
                    vec![1, SEQUENCE_LENGTH, features],
                    format!(
                        "; a sequence of {SEQUENCE_LENGTH}, as forward() unpacks its size into three"
                    ),
                )
            } else if let Some(rank @ 3..) = u.op_rank {
                // [batch, 1.., sequence, features]: the middle dimensions of
                // size 1 suit a squeeze, as DeepSpeech's channel does.
                let mut dims = vec![1; rank - 2];
                dims.extend([SEQUENCE_LENGTH, features]);
                let (dims, reshaped) = own_rank(dims, u.rank_change);
                (
                    dims,
                    format!(
                        "; the layer's input has rank {rank}, as the operators after it imply \
                         (batch, {}a sequence of {SEQUENCE_LENGTH}, features){reshaped}",
                        "1, ".repeat(rank - 3)
                    ),
                )
            } else {
                own_rank(vec![1, features], u.rank_change)
            };
            let from =
                format!("{features} features, from the linear layer {weight} ({op}){sequence}");
            (float("features", dims), from)
        }
        UseKind::Recurrent => {
            if shape.len() != 2 {
                return Err(bad_shape());
            }
            let features = shape[1];
            let dims = if u.batch_first {
                vec![1, SEQUENCE_LENGTH, features]
            } else {
                vec![SEQUENCE_LENGTH, 1, features]
            };
            let layout = if u.batch_first {
                "batch_first: batch, steps, features"
            } else {
                "not batch_first: steps, batch, features"
            };
            let from = format!(
                "a sequence of {SEQUENCE_LENGTH} steps of {features} features, from the recurrent \
                 layer's {weight} ({op}, {layout})"
            );
            (float("sequence", dims), from)
        }
        UseKind::LayerNorm => {
            if shape.is_empty() {
                return Err(bad_shape());
            }
            let dims = [vec![1], shape.clone()].concat();
            let from =
                format!("the normalized shape {shape:?} of the layer norm ({op}) it goes to first");
            (float("features", dims), from)
        }
        UseKind::Waveform => {
            let (dims, reshaped) = own_rank(vec![1, AUDIO_SAMPLES], u.rank_change);
            let from = format!(
                "a waveform of {AUDIO_SAMPLES} samples (one second of 16 kHz audio), as it goes \
                 to a short-time Fourier transform ({op}) first{reshaped}"
            );
            (float("waveform", dims), from)
        }
        UseKind::Undecided | UseKind::Arithmetic => unreachable!("returned above"),
    };
    Ok(Inferred { spec, from })
}

/// The input's own dimensions, given the `dims` its deciding operator
/// takes and how much the operators between change the rank (`x[:, None]`:
/// +1): size-1 dimensions dropped from the front (not the last), or added
/// there. With the words the report gives, empty when nothing changed.
fn own_rank(dims: Vec<i64>, change: Option<i32>) -> (Vec<i64>, String) {
    let change = match change {
        Some(c) if c != 0 => c,
        _ => return (dims, String::new()),
    };
    let words = |own: &[i64]| {
        format!(
            "; {own:?} itself, as forward() changes its rank by {change:+} on the way to \
             {dims:?}"
        )
    };
    if change < 0 {
        let own = [vec![1; change.unsigned_abs() as usize], dims.clone()].concat();
        let words = words(&own);
        return (own, words);
    }
    let mut drop = change as usize;
    let last = dims.len().saturating_sub(1);
    let own: Vec<i64> = dims
        .iter()
        .enumerate()
        .filter(|&(i, &d)| {
            let dropped = drop > 0 && d == 1 && i < last;
            drop -= usize::from(dropped);
            !dropped
        })
        .map(|(_, &d)| d)
        .collect();
    if drop > 0 {
        // Not enough dimensions of size 1: the operator's own shape.
        return (
            dims,
            format!(
                "; forward() changes its rank by {change:+} before, which these dimensions \
                 cannot give"
            ),
        );
    }
    let words = words(&own);
    (own, words)
}

/// "a signal", "an image".
fn article(word: &str) -> String {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

/// The length of inferred token ids, and why, in words: a table of
/// positions bounds it.
fn sequence_length(tables: &[EmbeddingTable], tokens: Option<&str>) -> (i64, String) {
    let positions = tables
        .iter()
        .filter(|t| t.weight.is_none() || t.weight.as_deref() != tokens)
        .filter(|t| t.indices_from_arange || t.weight.as_deref().is_some_and(names_positions))
        .min_by_key(|t| t.rows);
    match positions {
        Some(table) if table.rows < SEQUENCE_LENGTH && table.rows > 0 => (
            table.rows,
            format!(
                "a sequence of {}, the rows of the position table {}",
                table.rows,
                table.weight.as_deref().unwrap_or("(a constant)")
            ),
        ),
        Some(table) => (
            SEQUENCE_LENGTH,
            format!(
                "a sequence of {SEQUENCE_LENGTH} by default (the position table {} has {} rows)",
                table.weight.as_deref().unwrap_or("(a constant)"),
                table.rows
            ),
        ),
        None => (
            SEQUENCE_LENGTH,
            format!("a sequence of {SEQUENCE_LENGTH} by default"),
        ),
    }
}

/// An embedding table named for positions: "position_embeddings", "pos_emb",
/// GPT-2's "wpe".
fn names_positions(weight: &str) -> bool {
    let table = weight.rsplit('.').nth(1).unwrap_or(weight).to_lowercase();
    table.contains("pos") || table == "wpe"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(kind: UseKind, op: &str, weight: &str, shape: &[i64]) -> InputUse {
        InputUse {
            name: None,
            kind,
            op: Some(op.into()),
            weight: Some(weight.into()),
            weight_shape: Some(shape.to_vec()),
            dim: 0,
            groups: 1,
            transposed: false,
            batch_first: false,
            rank: None,
            rank_change: None,
            op_rank: None,
        }
    }

    fn table(weight: &str, rows: i64, from_arange: bool) -> EmbeddingTable {
        EmbeddingTable {
            weight: Some(weight.into()),
            rows,
            indices_from_arange: from_arange,
        }
    }

    fn one(u: InputUse, tables: Vec<EmbeddingTable>) -> Result<Inferred, Undecided> {
        let uses = GraphUses {
            inputs: vec![u],
            embedding_tables: tables,
        };
        infer(&uses, 1).remove(0)
    }

    #[test]
    fn an_embedding_gives_token_ids_below_its_vocabulary() {
        let u = used(
            UseKind::Embedding,
            "aten::embedding",
            "emb.weight",
            &[1000, 64],
        );
        let tables = vec![table("emb.weight", 1000, false)];
        let got = one(u.clone(), tables).unwrap();
        assert_eq!(got.spec.shape, [1, SEQUENCE_LENGTH]);
        assert_eq!(got.spec.dtype, DType::Int64);
        assert_eq!((got.spec.low, got.spec.high), (Some(0.0), Some(1000.0)));
        assert!(
            got.from.starts_with(
                "token ids below the vocabulary size 1000, from the embedding `emb.weight`"
            ),
            "{}",
            got.from
        );
        // A table of 8 positions bounds the sequence; a longer one does not.
        let short = one(u.clone(), vec![table("pos.weight", 8, true)]).unwrap();
        assert_eq!(short.spec.shape, [1, 8]);
        assert!(
            short
                .from
                .contains("the rows of the position table pos.weight"),
            "{}",
            short.from
        );
        let long = one(u.clone(), vec![table("h.wpe.weight", 1024, false)]).unwrap();
        assert_eq!(long.spec.shape, [1, SEQUENCE_LENGTH]);
        // A token-type table of 2 rows is no position table.
        let types = one(
            u.clone(),
            vec![table("token_type_embeddings.weight", 2, false)],
        )
        .unwrap();
        assert_eq!(types.spec.shape, [1, SEQUENCE_LENGTH]);
        // index_select on dimension 1 of a [64, 500] weight: 500 ids.
        let select = InputUse {
            dim: 1,
            ..used(
                UseKind::Embedding,
                "aten::index_select",
                "table",
                &[64, 500],
            )
        };
        assert_eq!(one(select, vec![]).unwrap().spec.high, Some(500.0));
    }

    #[test]
    fn a_convolution_gives_its_rank_and_channels() {
        let conv2d = used(
            UseKind::Convolution,
            "aten::conv2d",
            "c.weight",
            &[16, 3, 3, 3],
        );
        let got = one(conv2d.clone(), vec![]).unwrap();
        assert_eq!(got.spec.shape, [1, 3, 224, 224]);
        assert_eq!(got.spec.dtype, DType::Float32);
        assert!(got
            .from
            .starts_with("an image of 3 channels, from the convolution `c.weight`"));
        let grouped = InputUse {
            groups: 4,
            ..used(
                UseKind::Convolution,
                "aten::_convolution",
                "c.weight",
                &[8, 2, 3, 3],
            )
        };
        assert_eq!(one(grouped, vec![]).unwrap().spec.shape, [1, 8, 224, 224]);
        let conv1d = used(
            UseKind::Convolution,
            "aten::conv1d",
            "c.weight",
            &[16, 1, 9],
        );
        // 1 channel: audio, one second at 16 kHz.
        let waveform = one(conv1d.clone(), vec![]).unwrap();
        assert_eq!(waveform.spec.shape, [1, 1, AUDIO_SAMPLES]);
        assert!(waveform.from.contains("16 kHz"), "{}", waveform.from);
        // `x[:, None]` before it: the input is [batch, samples].
        let unsqueezed = InputUse {
            rank_change: Some(1),
            ..conv1d
        };
        let got = one(unsqueezed, vec![]).unwrap();
        assert_eq!(got.spec.shape, [1, AUDIO_SAMPLES]);
        assert!(got.from.contains("changes its rank by +1"), "{}", got.from);
        let channels = used(
            UseKind::Convolution,
            "aten::conv1d",
            "c.weight",
            &[16, 4, 9],
        );
        assert_eq!(
            one(channels.clone(), vec![]).unwrap().spec.shape,
            [1, 4, 224]
        );
        // Two more dimensions than [1, 4, 224] has of size 1: left as it is.
        let too_many = InputUse {
            rank_change: Some(2),
            ..channels
        };
        assert_eq!(one(too_many, vec![]).unwrap().spec.shape, [1, 4, 224]);
        let transposed = InputUse {
            transposed: true,
            ..used(
                UseKind::Convolution,
                "aten::conv_transpose2d",
                "c.weight",
                &[32, 8, 4, 4],
            )
        };
        assert_eq!(
            one(transposed, vec![]).unwrap().spec.shape,
            [1, 32, 224, 224]
        );
        let conv3d = used(
            UseKind::Convolution,
            "aten::conv3d",
            "c.weight",
            &[8, 3, 3, 3, 3],
        );
        assert_eq!(
            one(conv3d, vec![]).unwrap().spec.shape,
            [1, 3, 16, 112, 112]
        );
    }

    #[test]
    fn linear_recurrent_and_layer_norm_give_their_features() {
        let linear = used(UseKind::Linear, "aten::linear", "fc.weight", &[32, 64]);
        assert_eq!(one(linear.clone(), vec![]).unwrap().spec.shape, [1, 64]);
        let unpacked = InputUse {
            rank: Some(3),
            ..linear
        };
        assert_eq!(
            one(unpacked, vec![]).unwrap().spec.shape,
            [1, SEQUENCE_LENGTH, 64]
        );
        let matmul = InputUse {
            transposed: true,
            ..used(UseKind::Linear, "aten::matmul", "w", &[64, 32])
        };
        assert_eq!(one(matmul, vec![]).unwrap().spec.shape, [1, 64]);

        let lstm = used(
            UseKind::Recurrent,
            "aten::lstm",
            "rnn.weight_ih_l0",
            &[128, 20],
        );
        let got = one(lstm.clone(), vec![]).unwrap();
        assert_eq!(got.spec.shape, [SEQUENCE_LENGTH, 1, 20]);
        assert!(got.from.contains("not batch_first"), "{}", got.from);
        let batch_first = InputUse {
            batch_first: true,
            ..lstm
        };
        assert_eq!(
            one(batch_first, vec![]).unwrap().spec.shape,
            [1, SEQUENCE_LENGTH, 20]
        );

        // Rank 4 implied after the layer (DeepSpeech): batch, channel, time, features.
        let four = InputUse {
            op_rank: Some(4),
            ..used(UseKind::Linear, "aten::linear", "fc.weight", &[32, 40])
        };
        let got = one(four, vec![]).unwrap();
        assert_eq!(got.spec.shape, [1, 1, SEQUENCE_LENGTH, 40]);
        assert!(got.from.contains("rank 4"), "{}", got.from);
        // flatten(1) before the layer: the input has one dimension more.
        let flattened = InputUse {
            rank_change: Some(-1),
            ..used(UseKind::Linear, "aten::linear", "fc.weight", &[32, 40])
        };
        assert_eq!(one(flattened, vec![]).unwrap().spec.shape, [1, 1, 40]);

        let norm = used(UseKind::LayerNorm, "aten::layer_norm", "ln.weight", &[48]);
        assert_eq!(one(norm, vec![]).unwrap().spec.shape, [1, 48]);
    }

    #[test]
    fn an_stft_gives_a_waveform() {
        let stft = InputUse {
            weight: None,
            weight_shape: None,
            ..used(UseKind::Waveform, "aten::stft", "", &[])
        };
        let got = one(stft.clone(), vec![]).unwrap();
        assert_eq!(got.spec.shape, [1, AUDIO_SAMPLES]);
        assert_eq!(got.spec.dtype, DType::Float32);
        assert!(got.from.contains("Fourier"), "{}", got.from);
        // x.unsqueeze(0) before it: the waveform is 1-D.
        let one_d = InputUse {
            rank_change: Some(1),
            ..stft
        };
        assert_eq!(one(one_d, vec![]).unwrap().spec.shape, [AUDIO_SAMPLES]);
    }

    #[test]
    fn what_the_graph_does_not_tell_stays_undecided() {
        let stopped = InputUse {
            kind: UseKind::Undecided,
            weight: None,
            weight_shape: None,
            ..used(UseKind::Undecided, "aten::tanh", "", &[])
        };
        assert_eq!(
            one(stopped, vec![]),
            Err(Undecided::StoppedAt("aten::tanh".into()))
        );
        let unread = InputUse {
            weight: None,
            weight_shape: None,
            ..used(UseKind::Linear, "aten::linear", "", &[])
        };
        assert!(matches!(
            one(unread, vec![]),
            Err(Undecided::NoWeight { .. })
        ));
        let odd = used(UseKind::Linear, "aten::linear", "w", &[2, 3, 4]);
        assert!(matches!(
            one(odd, vec![]),
            Err(Undecided::WeightShape { .. })
        ));
        // A mask alone has nothing to take its shape from.
        let mask = used(UseKind::Arithmetic, "aten::add", "", &[]);
        assert!(matches!(
            one(mask, vec![]),
            Err(Undecided::LoneArithmetic(_))
        ));
    }

    #[test]
    fn a_mask_beside_token_ids_is_ones_of_their_shape() {
        let ids = InputUse {
            name: Some("input_ids".into()),
            ..used(
                UseKind::Embedding,
                "aten::embedding",
                "wte.weight",
                &[300, 32],
            )
        };
        let mask = InputUse {
            name: Some("attention_mask".into()),
            kind: UseKind::Arithmetic,
            weight: None,
            weight_shape: None,
            ..used(UseKind::Arithmetic, "aten::add", "", &[])
        };
        let uses = GraphUses {
            inputs: vec![ids, mask],
            embedding_tables: vec![],
        };
        let got: Vec<Inferred> = infer(&uses, 2).into_iter().map(Result::unwrap).collect();
        assert_eq!(got[1].spec.name.as_deref(), Some("attention_mask"));
        assert_eq!(got[1].spec.shape, got[0].spec.shape);
        assert_eq!(got[1].spec.dtype, DType::Int64);
        assert_eq!((got[1].spec.low, got[1].spec.high), (Some(1.0), Some(2.0)));
        assert!(got[1].from.contains("`input_ids`"), "{}", got[1].from);
        // Only the required inputs are inferred.
        assert_eq!(infer(&uses, 1).len(), 1);
    }

    /// A committed fixture's bytes: from worker/ or from worker/tch-0.19/.
    fn fixture(name: &str) -> Vec<u8> {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = ["..", "../.."]
            .iter()
            .map(|up| manifest.join(up).join("tests/fixtures/models").join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("fixture {name} not found above {}", manifest.display()));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_shim_reads_each_inputs_first_use_from_the_inlined_graph() {
        use crate::shim::graph::input_uses;
        // Traced: submodules called through prim::CallMethod.
        let gpt = input_uses(&fixture("gpt_decoder.pt")).unwrap();
        assert_eq!(gpt.inputs.len(), 1);
        let ids = &gpt.inputs[0];
        assert_eq!(ids.kind, UseKind::Embedding, "{ids:?}");
        assert_eq!(ids.weight.as_deref(), Some("wte.weight"));
        assert_eq!(ids.weight_shape, Some(vec![256, 64]));
        assert_eq!(ids.name.as_deref(), Some("idx"));
        let positions = gpt
            .embedding_tables
            .iter()
            .find(|t| t.weight.as_deref() == Some("wpe.weight"))
            .expect("the position table");
        assert_eq!(positions.rows, 64);
        assert!(positions.indices_from_arange);

        // Scripted nn.LSTM: its forward inlined, weights in a list attribute.
        let lstm = input_uses(&fixture("lstm_first.pt")).unwrap();
        let x = &lstm.inputs[0];
        assert_eq!(
            (x.kind, x.batch_first),
            (UseKind::Recurrent, false),
            "{x:?}"
        );
        assert_eq!(x.weight_shape, Some(vec![128, 20]));
        let tagger = input_uses(&fixture("lstm_tagger.pt")).unwrap();
        assert_eq!(tagger.inputs[0].kind, UseKind::Embedding);

        // Conv1d through a traced nn.Sequential.
        let audio = input_uses(&fixture("audio_conv1d.pt")).unwrap();
        assert_eq!(audio.inputs[0].kind, UseKind::Convolution);
        assert_eq!(audio.inputs[0].weight_shape, Some(vec![16, 1, 9]));

        // A mask used in arithmetic, through slicing, .to() and 1.0 - mask.
        let masked = input_uses(&fixture("masked_encoder.pt")).unwrap();
        assert_eq!(masked.inputs[0].kind, UseKind::Embedding);
        assert_eq!(
            masked.inputs[1].kind,
            UseKind::Arithmetic,
            "{:?}",
            masked.inputs[1]
        );
        assert_eq!(masked.inputs[1].op.as_deref(), Some("aten::add"));

        // Scripted, two inputs: a convolution and a linear layer.
        let two = input_uses(&fixture("two_inputs.pt")).unwrap();
        assert_eq!(two.inputs[0].kind, UseKind::Convolution);
        assert_eq!(two.inputs[1].kind, UseKind::Linear);
        assert_eq!(two.inputs[1].weight_shape, Some(vec![8, 16]));

        // tanh tells nothing: the walk stops there.
        let opaque = input_uses(&fixture("opaque_inputs.pt")).unwrap();
        assert_eq!(opaque.inputs[0].kind, UseKind::Undecided);
        assert_eq!(opaque.inputs[0].op.as_deref(), Some("aten::tanh"));

        // `x[:, None]` (slice, unsqueeze) before a conv1d: one rank more.
        let wave = input_uses(&fixture("waveform_conv.pt")).unwrap();
        assert_eq!(wave.inputs[0].kind, UseKind::Convolution);
        assert_eq!(wave.inputs[0].rank_change, Some(1), "{:?}", wave.inputs[0]);
        assert_eq!(
            one(wave.inputs[0].clone(), vec![]).unwrap().spec.shape,
            [1, AUDIO_SAMPLES]
        );
        // Scripted torch.stft: reshaped to computed shapes before it.
        let stft = input_uses(&fixture("stft_spectrogram.pt")).unwrap();
        assert_eq!(
            stft.inputs[0].kind,
            UseKind::Waveform,
            "{:?}",
            stft.inputs[0]
        );
        assert_eq!(stft.inputs[0].op.as_deref(), Some("aten::stft"));
        // A linear layer whose squeeze(1) and LSTM after it imply rank 4.
        let four = input_uses(&fixture("linear_first_4d.pt")).unwrap();
        assert_eq!(four.inputs[0].kind, UseKind::Linear);
        assert_eq!(four.inputs[0].op_rank, Some(4), "{:?}", four.inputs[0]);
        assert_eq!(four.inputs[0].rank_change, Some(0));
        // Nothing after lstm_first's or two_inputs' layers implies a rank.
        assert_eq!(two.inputs[1].op_rank, None, "{:?}", two.inputs[1]);

        // Not a model: an error, not a crash.
        assert!(input_uses(b"not a zip").is_err());
    }
}
