//! INT8 (and FP16/BF16 for comparison) on NVIDIA GPUs through TensorRT's
//! `trtexec`.
//!
//! PyTorch's quantized operators run on the CPU only, so on a GPU INT8 means
//! TensorRT. precisiond does not link TensorRT: it runs `trtexec` on an ONNX
//! file of the model, in two steps, each a child process:
//!
//! 1. build: `trtexec --onnx=M.onnx --int8 --saveEngine=E --skipInference`,
//!    once per ONNX file, TensorRT version, flags and GPU: the engine is
//!    cached in the state folder (`.precisiond/tensorrt/`);
//! 2. time: `trtexec --loadEngine=E --exportTimes=T.json --warmUp=… --duration=…`,
//!    whose per-inference times are read from the JSON file (never scraped
//!    from the console) and summarised like every other result.
//!
//! Everything here is libtorch-free, so the command lines, the parsing and
//! the cache keys are unit-tested without a GPU (tests/tensorrt.rs); the
//! flow is tested in the worker with a `trtexec` stand-in script.
//!
//! One file per part a reader looks for:
//! - `locate`: finding trtexec and its TensorRT version;
//! - `plan`: the builder flags of a precision and the command lines;
//! - `engine_cache`: what makes an engine different, and what is kept beside it;
//! - `export_times`: reading the `--exportTimes` trace;
//! - `onnx`: which ONNX file, and whether it carries Q/DQ scales.
//!
//! Running trtexec for a result (build, cache, time) is the worker's: see
//! `worker/src/method/tensorrt/`.
//!
//! Formats and flags follow TensorRT's own trtexec sources
//! (github.com/NVIDIA/TensorRT, samples/trtexec and samples/common):
//! - the banner `&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # …`
//!   comes from `Logger::defineTest` (samples/common/logging.h), with the
//!   version as `NV_TENSORRT_VERSION`: major*1000+minor*100+patch up to 8.x,
//!   major*10000+minor*100+patch from 10.0 (include/NvInferRuntimeBase.h);
//! - `--exportTimes` writes `exportJSONTrace` (samples/common/sampleReporting.cpp):
//!   a JSON array of objects with startEnqMs, endEnqMs, startH2dMs, endH2dMs,
//!   startComputeMs, endComputeMs, startD2hMs, endD2hMs, h2dMs, computeMs,
//!   d2hMs, latencyMs; from 8.5.1 without the warm-up queries, before that
//!   with them (and an endToEndMs);
//! - `--bf16` exists from TensorRT 10.0; `--skipInference` from 8.6
//!   (`--buildOnly` before, removed in 10.0); `--noDataTransfers` from 7.2.1
//!   (a deprecated no-op in 11, where transfers are off by default);
//! - TensorRT 11 builds strongly typed networks only: `--fp16`, `--bf16` and
//!   the builder's `--int8` are gone, the ONNX file's own types (and Q/DQ
//!   nodes for INT8) decide the precision.

mod engine_cache;
mod export_times;
mod locate;
mod onnx;
mod plan;

// The paths callers use stay `tensorrt::…`, whichever file an item lives in.
pub use engine_cache::{engine_facts_path, EngineFacts, EngineKey};
pub use export_times::{parse_export_times, samples_ms, TraceEntry, TraceError};
pub use locate::{
    find, locate, locate_in, parse_version, probe, TrtVersion, Trtexec, TrtexecError,
    FALLBACK_DIRS, NOT_FOUND_REASON,
};
pub use onnx::{onnx_for, onnx_has_qdq, OnnxError};
pub use plan::{build_args, plan, timing_args, Calibration, Plan, Unbuildable};
