//! The command plan: which builder flags a precision needs on a given
//! TensorRT version (or why that version cannot build it), and the exact
//! command lines of the build and the timing run. Pure, so every version's
//! flags are tested without trtexec.

use super::TrtVersion;
use crate::precision::Precision;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the INT8 ranges of an engine come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calibration {
    /// The ONNX file has QuantizeLinear/DequantizeLinear nodes with scales.
    ExplicitQdq,
    /// A TensorRT calibration cache, passed with `--calib=`.
    Cache(PathBuf),
    /// Neither: trtexec uses placeholder ranges. Timing valid, accuracy not.
    Placeholder,
}

/// The builder flags for one precision, and where INT8 ranges come from.
/// Flags are `OsString`s, like every trtexec argument: one may name a path,
/// and a path need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub precision: Precision,
    pub flags: Vec<OsString>,
    pub calibration: Option<Calibration>,
}

/// The builder flags for `precision` on `version`, or why TensorRT cannot
/// build it (the result is then `unsupported` with that reason).
pub fn plan(
    version: TrtVersion,
    precision: Precision,
    onnx_has_qdq: bool,
    calibration_cache: Option<&Path>,
) -> Result<Plan, Unbuildable> {
    let strongly_typed = |flag| Unbuildable::StronglyTyped { version, flag };
    let (flags, calibration) = match precision {
        Precision::Fp32 => return Err(Unbuildable::Fp32),
        Precision::Fp16 if version.strongly_typed_only() => return Err(strongly_typed("--fp16")),
        Precision::Fp16 => (vec!["--fp16".into()], None),
        Precision::Bf16 if version.strongly_typed_only() => return Err(strongly_typed("--bf16")),
        Precision::Bf16 if !version.has_bf16_flag() => return Err(Unbuildable::NoBf16(version)),
        Precision::Bf16 => (vec!["--bf16".into()], None),
        Precision::Int8 if version.strongly_typed_only() => {
            if !onnx_has_qdq {
                return Err(Unbuildable::Int8WithoutQdq(version));
            }
            (Vec::new(), Some(Calibration::ExplicitQdq))
        }
        Precision::Int8 => {
            let mut flags = vec![OsString::from("--int8")];
            let calibration = if onnx_has_qdq {
                Calibration::ExplicitQdq
            } else if let Some(cache) = calibration_cache {
                flags.push(path_flag("--calib=", cache));
                Calibration::Cache(cache.to_path_buf())
            } else {
                Calibration::Placeholder
            };
            (flags, Some(calibration))
        }
    };
    Ok(Plan {
        precision,
        flags,
        calibration,
    })
}

/// Why TensorRT (this version of it) cannot build a precision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unbuildable {
    #[error("FP32 on the GPU is timed with libtorch; TensorRT is used for int8, fp16 and bf16")]
    Fp32,
    #[error(
        "TensorRT {version} builds strongly typed networks only: trtexec has no {flag} flag, the \
         ONNX file's own types decide the precision"
    )]
    StronglyTyped {
        version: TrtVersion,
        flag: &'static str,
    },
    #[error("TensorRT {0} has no BF16 in trtexec (--bf16 exists from TensorRT 10.0)")]
    NoBf16(TrtVersion),
    #[error(
        "{}; INT8 needs an ONNX file with QuantizeLinear/DequantizeLinear nodes (for example from \
         NVIDIA's Model Optimizer), and this one has none",
        Unbuildable::StronglyTyped { version: *.0, flag: "--int8" }
    )]
    Int8WithoutQdq(TrtVersion),
}

/// `NAME=PATH` as one argument, the path byte for byte.
fn path_flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path);
    flag
}

/// The engine build: `trtexec --onnx=… FLAGS --saveEngine=… --device=N`
/// and the build-only flag of this version.
pub fn build_args(
    version: TrtVersion,
    onnx: &Path,
    engine: &Path,
    flags: &[OsString],
    device: usize,
) -> Vec<OsString> {
    let mut args = vec![path_flag("--onnx=", onnx)];
    args.extend(flags.iter().cloned());
    args.push(path_flag("--saveEngine=", engine));
    args.push(format!("--device={device}").into());
    args.push(if version >= TrtVersion::new(8, 6, 0) {
        "--skipInference".into()
    } else {
        "--buildOnly".into()
    });
    args
}

/// The timing run of a built engine. `warmup_ms` and `duration_s` follow
/// the job's per-precision budget.
pub fn timing_args(
    version: TrtVersion,
    engine: &Path,
    times: &Path,
    device: usize,
    warmup_ms: u64,
    duration_s: u64,
) -> Vec<OsString> {
    let mut args = vec![
        path_flag("--loadEngine=", engine),
        path_flag("--exportTimes=", times),
        format!("--device={device}").into(),
        format!("--warmUp={warmup_ms}").into(),
        format!("--duration={}", duration_s.max(1)).into(),
    ];
    // Inputs stay on the device, like the libtorch CUDA timings. A no-op
    // (deprecated) from 11, where transfers are off by default.
    if version >= TrtVersion::new(7, 2, 1) && !version.strongly_typed_only() {
        args.push("--noDataTransfers".into());
    }
    args
}
