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
//! the cache keys are unit-tested without a GPU; the flow is tested with a
//! `trtexec` stand-in script (tests/tensorrt.rs).
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

use crate::bench::{self, LatencyStats, StopReason};
use crate::fsutil::hex_sha256;
use crate::precision::Precision;
use crate::report::{CalibrationFacts, Method, PrecisionResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where JetPack (and NVIDIA's Debian packages) install trtexec, which is
/// not on PATH there.
pub const FALLBACK_DIRS: &[&str] = &["/usr/src/tensorrt/bin"];

/// The int8 reason on a CUDA device without TensorRT.
pub const NOT_FOUND_REASON: &str =
    "TensorRT's trtexec not found; PyTorch's quantized operators are CPU-only";

/// How the latency of a TensorRT result is measured, for the report.
pub const TIMING: &str = "trtexec --exportTimes: GPU compute time of each inference (computeMs, \
     CUDA events around the engine's enqueue), inputs and outputs kept on the device";

/// A TensorRT version, as trtexec reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        TrtVersion {
            major,
            minor,
            patch,
        }
    }

    /// Decodes `NV_TENSORRT_VERSION`: major*1000+minor*100+patch up to
    /// TensorRT 9 (8601 = 8.6.1), major*10000+minor*100+patch from 10
    /// (100300 = 10.3.0).
    pub fn from_int(n: u64) -> Option<TrtVersion> {
        if n == 0 {
            return None;
        }
        let (major, minor, patch) = if n >= 10_000 {
            (n / 10_000, (n / 100) % 100, n % 100)
        } else {
            (n / 1000, (n / 100) % 10, n % 100)
        };
        Some(TrtVersion::new(
            u32::try_from(major).ok()?,
            minor as u32,
            patch as u32,
        ))
    }

    /// `--bf16` is a trtexec flag from TensorRT 10.0.
    pub fn has_bf16_flag(self) -> bool {
        self >= TrtVersion::new(10, 0, 0)
    }

    /// TensorRT 11 builds strongly typed networks only.
    pub fn strongly_typed_only(self) -> bool {
        self.major >= 11
    }

    /// `--exportTimes` leaves out the warm-up queries from 8.5.1.
    pub fn export_skips_warmup(self) -> bool {
        self >= TrtVersion::new(8, 5, 1)
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The TensorRT version in trtexec's output: the banner
/// `&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b17] # trtexec …`
/// (any `&&&&` line), else the `TensorRT version: 10.3.0` line that runs
/// print after their options.
pub fn parse_version(output: &str) -> Option<TrtVersion> {
    for line in output.lines() {
        let Some(at) = line.find("[TensorRT v") else {
            continue;
        };
        let rest = &line[at + "[TensorRT v".len()..];
        let Some(end) = rest.find(']') else {
            continue;
        };
        let token = &rest[..end];
        if let Some(v) = parse_version_token(token) {
            return Some(v);
        }
    }
    output.lines().find_map(|line| {
        let at = line.find("TensorRT version: ")?;
        parse_dotted(line[at + "TensorRT version: ".len()..].trim())
    })
}

fn parse_version_token(token: &str) -> Option<TrtVersion> {
    if token.contains('.') {
        parse_dotted(token)
    } else {
        TrtVersion::from_int(token.parse().ok()?)
    }
}

fn parse_dotted(text: &str) -> Option<TrtVersion> {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty())
        .map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().and_then(Result::ok).unwrap_or(0);
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    Some(TrtVersion::new(major, minor, patch))
}

/// A usable trtexec and the TensorRT version behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trtexec {
    pub path: PathBuf,
    pub version: TrtVersion,
}

/// Finds trtexec: the configured path (the config's `trtexec` or
/// `--trtexec`), else `PATH`, else [`FALLBACK_DIRS`]. `path_var` is the
/// value of `PATH`.
pub fn locate(configured: Option<&Path>, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    let fallback: Vec<PathBuf> = FALLBACK_DIRS.iter().map(PathBuf::from).collect();
    locate_in(configured, path_var, &fallback)
}

/// [`locate`] with the fallback folders given (for tests).
pub fn locate_in(
    configured: Option<&Path>,
    path_var: Option<&OsStr>,
    fallback_dirs: &[PathBuf],
) -> Result<PathBuf, String> {
    if let Some(path) = configured {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "the configured trtexec {} is not an executable file; PyTorch's quantized \
                 operators are CPU-only",
                path.display()
            ))
        };
    }
    let on_path = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .iter()
        .chain(fallback_dirs)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("trtexec"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            let dirs: Vec<String> = fallback_dirs.iter().map(|d| d.display().to_string()).collect();
            format!(
                "{NOT_FOUND_REASON} (looked on PATH and in {}; set `trtexec` in the config to use another)",
                dirs.join(", ")
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `trtexec --help` and reads the version from its banner.
pub fn probe(path: &Path) -> Result<Trtexec, String> {
    let out = run_captured(path, &["--help".to_owned()], Duration::from_secs(60), None)?;
    match parse_version(&out.text) {
        Some(version) => Ok(Trtexec {
            path: path.to_path_buf(),
            version,
        }),
        None => Err(format!(
            "cannot tell the TensorRT version of {}: `trtexec --help` printed no \
             \"[TensorRT vNNNN]\" banner (trtexec prints one from TensorRT 8.0; it printed: {})",
            path.display(),
            first_lines(&out.text, 3)
        )),
    }
}

/// Finds trtexec and asks it its version.
pub fn find(configured: Option<&Path>, path_var: Option<&OsStr>) -> Result<Trtexec, String> {
    probe(&locate(configured, path_var)?)
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub precision: Precision,
    pub flags: Vec<String>,
    pub calibration: Option<Calibration>,
}

/// The builder flags for `precision` on `version`, or why TensorRT cannot
/// build it (the result is then `unsupported` with that reason).
pub fn plan(
    version: TrtVersion,
    precision: Precision,
    onnx_has_qdq: bool,
    calibration_cache: Option<&Path>,
) -> Result<Plan, String> {
    let strongly_typed = |what: &str| {
        format!(
            "TensorRT {version} builds strongly typed networks only: trtexec has no {what} flag, \
             the ONNX file's own types decide the precision"
        )
    };
    let (flags, calibration) = match precision {
        Precision::Fp32 => {
            return Err(
                "FP32 on the GPU is timed with libtorch; TensorRT is used for int8, fp16 and bf16"
                    .into(),
            )
        }
        Precision::Fp16 if version.strongly_typed_only() => return Err(strongly_typed("--fp16")),
        Precision::Fp16 => (vec!["--fp16".to_owned()], None),
        Precision::Bf16 if version.strongly_typed_only() => return Err(strongly_typed("--bf16")),
        Precision::Bf16 if !version.has_bf16_flag() => {
            return Err(format!(
                "TensorRT {version} has no BF16 in trtexec (--bf16 exists from TensorRT 10.0)"
            ))
        }
        Precision::Bf16 => (vec!["--bf16".to_owned()], None),
        Precision::Int8 if version.strongly_typed_only() => {
            if !onnx_has_qdq {
                return Err(format!(
                    "{}; INT8 needs an ONNX file with QuantizeLinear/DequantizeLinear nodes \
                     (for example from NVIDIA's Model Optimizer), and this one has none",
                    strongly_typed("--int8")
                ));
            }
            (Vec::new(), Some(Calibration::ExplicitQdq))
        }
        Precision::Int8 => {
            let mut flags = vec!["--int8".to_owned()];
            let calibration = if onnx_has_qdq {
                Calibration::ExplicitQdq
            } else if let Some(cache) = calibration_cache {
                flags.push(format!("--calib={}", cache.display()));
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

/// The engine build: `trtexec --onnx=… FLAGS --saveEngine=… --device=N`
/// and the build-only flag of this version.
pub fn build_args(
    version: TrtVersion,
    onnx: &Path,
    engine: &Path,
    flags: &[String],
    device: usize,
) -> Vec<String> {
    let mut args = vec![format!("--onnx={}", onnx.display())];
    args.extend(flags.iter().cloned());
    args.push(format!("--saveEngine={}", engine.display()));
    args.push(format!("--device={device}"));
    args.push(if version >= TrtVersion::new(8, 6, 0) {
        "--skipInference".to_owned()
    } else {
        "--buildOnly".to_owned()
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
) -> Vec<String> {
    let mut args = vec![
        format!("--loadEngine={}", engine.display()),
        format!("--exportTimes={}", times.display()),
        format!("--device={device}"),
        format!("--warmUp={warmup_ms}"),
        format!("--duration={}", duration_s.max(1)),
    ];
    // Inputs stay on the device, like the libtorch CUDA timings. A no-op
    // (deprecated) from 11, where transfers are off by default.
    if version >= TrtVersion::new(7, 2, 1) && !version.strongly_typed_only() {
        args.push("--noDataTransfers".to_owned());
    }
    args
}

/// What an engine's cache key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey<'a> {
    pub onnx_sha256: &'a str,
    pub version: TrtVersion,
    pub flags: &'a [String],
    /// sha256 of the calibration cache, when one is used: a new cache means a new engine.
    pub calibration_sha256: Option<&'a str>,
    /// The GPU, e.g. "NVIDIA Orin (8.7)": engines are not portable between GPUs.
    pub gpu: &'a str,
}

impl EngineKey<'_> {
    /// A short hash of everything that makes an engine different.
    pub fn hash(&self) -> String {
        // The calibration flag names a path; the cache's content is what counts.
        let flags: Vec<&str> = self
            .flags
            .iter()
            .map(|f| {
                if f.starts_with("--calib=") {
                    "--calib"
                } else {
                    f.as_str()
                }
            })
            .collect();
        let text = format!(
            "onnx={}\ntensorrt={}\nflags={}\ncalibration={}\ngpu={}\n",
            self.onnx_sha256,
            self.version,
            flags.join(" "),
            self.calibration_sha256.unwrap_or("none"),
            self.gpu
        );
        hex_sha256(text.as_bytes())[..16].to_owned()
    }

    /// The engine's file in `dir` (the state folder's `tensorrt/`):
    /// `NAME.ONNXSHA12.trt10.3.0.int8.KEY16.engine`.
    pub fn engine_path(&self, dir: &Path, stem: &str, precision: Precision) -> PathBuf {
        dir.join(format!(
            "{stem}.{}.trt{}.{precision}.{}.engine",
            &self.onnx_sha256[..12.min(self.onnx_sha256.len())],
            self.version,
            self.hash()
        ))
    }
}

/// Facts kept beside a cached engine (`ENGINE.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineFacts {
    pub tensorrt: String,
    pub flags: Vec<String>,
    pub build_seconds: f64,
    pub built: String,
}

/// One inference of a `--exportTimes` trace: its keys (startComputeMs,
/// computeMs, latencyMs, …) and values in milliseconds.
pub type TraceEntry = BTreeMap<String, f64>;

/// Parses a `--exportTimes` file. trtexec writes it with C++ streams, so a
/// value may read `inf` or `nan`, which JSON does not allow; they are
/// accepted here and reported by [`samples_ms`].
pub fn parse_export_times(text: &str) -> Result<Vec<TraceEntry>, String> {
    let mut p = JsonScanner {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'[')?;
    let mut entries = Vec::new();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            entries.push(p.object()?);
            match p.next() {
                Some(b',') => continue,
                Some(b']') => break,
                other => return Err(p.error("',' or ']'", other)),
            }
        }
    }
    if p.peek().is_some() {
        return Err(format!("unexpected text after the array at byte {}", p.i));
    }
    Ok(entries)
}

struct JsonScanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonScanner<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn error(&self, wanted: &str, got: Option<u8>) -> String {
        match got {
            Some(c) => format!(
                "expected {wanted} at byte {}, found '{}'",
                self.i.saturating_sub(1),
                c as char
            ),
            None => format!("expected {wanted}, found the end of the file (is it truncated?)"),
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.next() {
            Some(got) if got == c => Ok(()),
            other => Err(self.error(&format!("'{}'", c as char), other)),
        }
    }

    fn object(&mut self) -> Result<TraceEntry, String> {
        self.expect(b'{')?;
        let mut entry = TraceEntry::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(entry);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.number()?;
            entry.insert(key, value);
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => return Ok(entry),
                other => return Err(self.error("',' or '}'", other)),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != b'"' {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("unterminated string".into());
        }
        let key = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(key)
    }

    fn number(&mut self) -> Result<f64, String> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len()
            && !matches!(self.s[self.i], b',' | b'}' | b']')
            && !self.s[self.i].is_ascii_whitespace()
        {
            self.i += 1;
        }
        let token = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        // "-nan" is what glibc prints for a negative NaN; Rust's parser
        // takes "nan" only.
        let token_for_parse = token.trim_start_matches('-');
        let value: f64 = if token_for_parse.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else {
            token
                .parse()
                .map_err(|_| format!("'{token}' at byte {start} is not a number"))?
        };
        Ok(value)
    }
}

/// The per-inference times (ms) of a trace: `computeMs` (else `latencyMs`)
/// of each entry. For versions before 8.5.1 the trace still holds the
/// warm-up, which is dropped here the way trtexec drops it from its own
/// summary: entries whose compute started before `warmup_ms`.
pub fn samples_ms(
    entries: &[TraceEntry],
    version: TrtVersion,
    warmup_ms: f64,
) -> Result<Vec<f64>, String> {
    let mut samples = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if !version.export_skips_warmup() && e.get("startComputeMs").is_some_and(|&s| s < warmup_ms)
        {
            continue;
        }
        let Some(&ms) = e.get("computeMs").or_else(|| e.get("latencyMs")) else {
            return Err(format!(
                "inference {i} of the trace has no computeMs or latencyMs"
            ));
        };
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(format!("inference {i} of the trace has computeMs = {ms}"));
        }
        samples.push(ms);
    }
    if samples.is_empty() {
        return Err("the trace holds no timed inference".into());
    }
    Ok(samples)
}

/// Whether an ONNX file quantizes explicitly: its graph has
/// QuantizeLinear/DequantizeLinear nodes (op types are plain strings in
/// the protobuf, so a byte search finds them).
pub fn onnx_has_qdq(bytes: &[u8]) -> bool {
    let needle = b"QuantizeLinear";
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The ONNX file for `model`: the one the settings name (relative to the
/// settings file), else `NAME.onnx` beside `NAME.pt`. Ok(None) when there
/// is none; Err when the settings name a file that does not exist.
pub fn onnx_for(
    model: &Path,
    named: Option<&Path>,
    settings_path: &Path,
) -> Result<Option<PathBuf>, String> {
    if let Some(named) = named {
        let path = if named.is_absolute() {
            named.to_path_buf()
        } else {
            settings_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(named)
        };
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(format!(
                "the ONNX file {} named in {} does not exist",
                path.display(),
                settings_path.display()
            ))
        };
    }
    let beside = model.with_extension("onnx");
    Ok(beside.is_file().then_some(beside))
}

/// One TensorRT measurement.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub trtexec: &'a Trtexec,
    pub onnx: &'a Path,
    pub precision: Precision,
    /// CUDA device index (trtexec's `--device`).
    pub device_index: usize,
    /// The GPU's name and compute capability, for the engine cache key.
    pub gpu: String,
    /// The state folder; engines go to its `tensorrt/`.
    pub state_dir: &'a Path,
    pub calibration_cache: Option<&'a Path>,
    /// The settings' calibration folder, when given (see [`measure`]).
    pub calibration_samples: Option<&'a Path>,
    /// Time budget for the timing run, warm-up included, in seconds.
    pub max_seconds: f64,
    /// Inputs per inference (the batch dimension), for the throughput.
    pub batch: i64,
    /// Longest an engine build may take.
    pub build_timeout: Duration,
}

/// Builds (or takes from the cache) the engine for `req` and times it.
/// Never panics: every problem is a `failed` or `unsupported` result with
/// the reason.
pub fn measure(req: &Request) -> PrecisionResult {
    let device = format!("cuda:{}", req.device_index);
    let p = req.precision;
    let mut result =
        PrecisionResult::not_measured(&device, p, Status::Ok, Method::Tensorrt, String::new());
    result.tensorrt_version = Some(req.trtexec.version.to_string());
    result.onnx = Some(req.onnx.display().to_string());
    let fail = |mut r: PrecisionResult, status: Status, reason: String| {
        r.status = status;
        r.reason = reason;
        r
    };

    let onnx_bytes = match std::fs::read(req.onnx) {
        Ok(b) => b,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("cannot read {}: {e}", req.onnx.display()),
            )
        }
    };
    let qdq = onnx_has_qdq(&onnx_bytes);
    let calibration_sha = match req.calibration_cache.map(std::fs::read) {
        Some(Ok(bytes)) => Some(hex_sha256(&bytes)),
        Some(Err(e)) => {
            let cache = req.calibration_cache.unwrap_or(Path::new("")).display();
            return fail(
                result,
                Status::Failed,
                format!("cannot read the TensorRT calibration cache {cache}: {e}"),
            );
        }
        None => None,
    };
    let plan = match plan(req.trtexec.version, p, qdq, req.calibration_cache) {
        Ok(plan) => plan,
        Err(why) => return fail(result, Status::Unsupported, why),
    };
    let onnx_sha = hex_sha256(&onnx_bytes);
    drop(onnx_bytes);
    let key = EngineKey {
        onnx_sha256: &onnx_sha,
        version: req.trtexec.version,
        flags: &plan.flags,
        calibration_sha256: calibration_sha.as_deref(),
        gpu: &req.gpu,
    };
    let dir = req.state_dir.join("tensorrt");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(
            result,
            Status::Failed,
            format!("cannot create {}: {e}", dir.display()),
        );
    }
    let stem = req
        .onnx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let engine = key.engine_path(&dir, &stem, p);
    result.engine_file = Some(engine.display().to_string());

    // Build, unless an engine with the same key is already there.
    let facts_path = engine_facts_path(&engine);
    let cached = engine
        .is_file()
        .then(|| std::fs::read_to_string(&facts_path).ok())
        .flatten()
        .and_then(|t| toml::from_str::<EngineFacts>(&t).ok());
    match cached {
        Some(facts) => {
            result.engine_build_seconds = Some(facts.build_seconds);
            result.engine_cached = Some(true);
        }
        None => match build_engine(req, &plan, &engine) {
            Ok(seconds) => {
                result.engine_build_seconds = Some(seconds);
                result.engine_cached = Some(false);
                let facts = EngineFacts {
                    tensorrt: req.trtexec.version.to_string(),
                    flags: plan.flags.clone(),
                    build_seconds: seconds,
                    built: crate::report::now().to_string(),
                };
                let text = toml::to_string(&facts).expect("engine facts serialise");
                if let Err(e) = crate::fsutil::write_atomic(&facts_path, text.as_bytes()) {
                    log::warn!("cannot write {}: {e}", facts_path.display());
                }
            }
            Err(why) => return fail(result, Status::Failed, why),
        },
    }

    // Time it.
    let budget = req.max_seconds.max(1.0);
    let warmup_ms = (budget * 0.25 * 1e3).round().clamp(200.0, 10_000.0) as u64;
    let duration_s = ((budget - warmup_ms as f64 / 1e3).ceil() as u64).max(1);
    let times = match tempfile::Builder::new()
        .prefix(".times-")
        .suffix(".json")
        .tempfile_in(&dir)
    {
        Ok(t) => t.into_temp_path(),
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        }
    };
    let args = timing_args(
        req.trtexec.version,
        &engine,
        &times,
        req.device_index,
        warmup_ms,
        duration_s,
    );
    let timeout = Duration::from_secs(duration_s + warmup_ms / 1000 + 120);
    let log_path = engine.with_extension("run.log");
    let run = match run_captured(&req.trtexec.path, &args, timeout, Some(&log_path)) {
        Ok(run) => run,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("trtexec could not time the engine: {e}"),
            )
        }
    };
    if !run.success {
        return fail(
            result,
            Status::Failed,
            format!(
                "trtexec failed to run the engine ({}): {} (full log: {})",
                run.status,
                error_lines(&run.text),
                log_path.display()
            ),
        );
    }
    let text = match std::fs::read_to_string(&times) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!(
                    "trtexec wrote no --exportTimes file ({e}); log: {}",
                    log_path.display()
                ),
            )
        }
    };
    let samples = match parse_export_times(&text)
        .and_then(|e| samples_ms(&e, req.trtexec.version, warmup_ms as f64))
    {
        Ok(s) => s,
        Err(e) => {
            return fail(
                result,
                Status::Failed,
                format!("trtexec's --exportTimes file is unusable: {e}"),
            )
        }
    };
    let stats = LatencyStats::from_samples(&samples).expect("samples_ms returns at least one");
    result.throughput_per_s = Some(req.batch.max(1) as f64 * 1e3 / stats.median);
    result.stop_reason = Some(StopReason::TimeBudget);
    result.median_rel_ci = bench::median_relative_ci(&samples);
    result.latency_ms = Some(stats);
    result.timing = Some(TIMING.to_owned());
    result.engine = Some(format!("tensorrt {}", req.trtexec.version));
    if p == Precision::Int8 {
        describe_calibration(
            &mut result,
            plan.calibration.as_ref(),
            req.calibration_samples,
        );
        result
            .notes
            .push("trtexec --int8: layers TensorRT cannot run in INT8 run in FP32".into());
    }
    let mut accuracy = crate::accuracy::Accuracy::default();
    let why = "trtexec times the engine on its own random inputs and precisiond does not read \
               TensorRT's outputs: no comparison with FP32"
        .to_owned();
    for metric in ["cosine", "max_abs_error", "sqnr_db"] {
        accuracy.worst.why_absent.insert(metric.into(), why.clone());
    }
    result.accuracy = Some(accuracy);
    result
}

fn describe_calibration(
    result: &mut PrecisionResult,
    calibration: Option<&Calibration>,
    samples: Option<&Path>,
) {
    let (source, note) = match calibration {
        Some(Calibration::ExplicitQdq) => (
            "explicit: QuantizeLinear/DequantizeLinear scales in the ONNX file".to_owned(),
            String::new(),
        ),
        Some(Calibration::Cache(path)) => (
            format!("TensorRT calibration cache {}", path.display()),
            String::new(),
        ),
        Some(Calibration::Placeholder) | None => {
            result.notes.push(
                "PLACEHOLDER RANGES: trtexec had no calibration (no calibration cache, no Q/DQ nodes in \
                 the ONNX file), so TensorRT used placeholder INT8 ranges: this timing is valid, the \
                 engine's accuracy is not; do not deploy it"
                    .into(),
            );
            let mut note =
                "no calibration: TensorRT placeholder ranges (timing valid, accuracy not)"
                    .to_owned();
            if let Some(dir) = samples {
                note.push_str(&format!(
                    "; the calibration samples in {} are used by the CPU int8 path only: trtexec cannot \
                     calibrate from them (that takes TensorRT's calibrator API); give a cache made from \
                     them (e.g. with polygraphy) as `tensorrt_calibration_cache` in the settings",
                    dir.display()
                ));
            }
            ("none (TensorRT placeholder ranges)".to_owned(), note)
        }
    };
    result.calibration = Some(CalibrationFacts {
        source,
        samples: 0,
        held_out: 0,
        note,
    });
}

fn engine_facts_path(engine: &Path) -> PathBuf {
    let mut name = engine.as_os_str().to_owned();
    name.push(".toml");
    PathBuf::from(name)
}

/// Builds the engine into a temporary name and renames it into place, so a
/// killed build never leaves an engine the cache would take for complete.
fn build_engine(req: &Request, plan: &Plan, engine: &Path) -> Result<f64, String> {
    let partial = engine.with_extension("engine.part");
    let args = build_args(
        req.trtexec.version,
        req.onnx,
        &partial,
        &plan.flags,
        req.device_index,
    );
    let log_path = engine.with_extension("build.log");
    let started = Instant::now();
    let run = run_captured(&req.trtexec.path, &args, req.build_timeout, Some(&log_path));
    let seconds = started.elapsed().as_secs_f64();
    let run = run.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("trtexec could not build the engine: {e}")
    })?;
    if !run.success || !partial.is_file() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "trtexec failed to build the {} engine ({}): {} (full log: {})",
            plan.precision,
            run.status,
            error_lines(&run.text),
            log_path.display()
        ));
    }
    std::fs::rename(&partial, engine)
        .map_err(|e| format!("cannot move the engine into place: {e}"))?;
    Ok(seconds)
}

/// What a trtexec run printed and how it ended.
struct Captured {
    success: bool,
    status: String,
    text: String,
}

/// Runs trtexec with `args`, stdout and stderr together into a file (the
/// log, when given), killing it after `timeout`. It dies with the worker
/// (PR_SET_PDEATHSIG), so a killed job never leaves a build running.
fn run_captured(
    exe: &Path,
    args: &[String],
    timeout: Duration,
    log: Option<&Path>,
) -> Result<Captured, String> {
    use std::os::unix::process::CommandExt;
    let (file, temp) = match log {
        Some(path) => (
            std::fs::File::create(path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
            None,
        ),
        None => {
            let t = tempfile::NamedTempFile::new()
                .map_err(|e| format!("cannot create a temporary file: {e}"))?;
            (t.reopen().map_err(|e| e.to_string())?, Some(t))
        }
    };
    let log_path = log
        .map(Path::to_path_buf)
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .expect("a log file");
    let err_file = file.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file));
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    log::info!("running {} {}", exe.display(), args.join(" "));
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} ran past {} s and was killed (log: {})",
                    exe.display(),
                    timeout.as_secs(),
                    log_path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("waiting for {}: {e}", exe.display())),
        }
    };
    let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    Ok(Captured {
        success: status.success(),
        status: status.to_string(),
        text,
    })
}

/// The lines of trtexec's output that say what went wrong: its `[E]` lines
/// (the last three), else its last lines.
pub fn error_lines(text: &str) -> String {
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[E]") || l.contains("Error") || l.contains("ERROR"))
        .map(str::trim)
        .collect();
    if errors.is_empty() {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        if tail.is_empty() {
            "it printed nothing".to_owned()
        } else {
            tail.join(" | ")
        }
    } else {
        errors[errors.len().saturating_sub(3)..].join(" | ")
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    if lines.is_empty() {
        "nothing".to_owned()
    } else {
        lines.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_both_encodings() {
        assert_eq!(TrtVersion::from_int(8601), Some(TrtVersion::new(8, 6, 1)));
        assert_eq!(TrtVersion::from_int(8201), Some(TrtVersion::new(8, 2, 1)));
        assert_eq!(TrtVersion::from_int(7103), Some(TrtVersion::new(7, 1, 3)));
        assert_eq!(
            TrtVersion::from_int(100300),
            Some(TrtVersion::new(10, 3, 0))
        );
        assert_eq!(
            TrtVersion::from_int(101600),
            Some(TrtVersion::new(10, 16, 0))
        );
        assert_eq!(
            TrtVersion::from_int(110100),
            Some(TrtVersion::new(11, 1, 0))
        );
        assert_eq!(TrtVersion::from_int(0), None);
        assert_eq!(
            parse_version("x [TensorRT v11.1.0.106] [b48] # y"),
            Some(TrtVersion::new(11, 1, 0))
        );
        assert_eq!(
            parse_version("[I] TensorRT version: 10.3.0\n"),
            Some(TrtVersion::new(10, 3, 0))
        );
        assert_eq!(parse_version("usage: trtexec"), None);
    }

    #[test]
    fn version_gates() {
        assert!(!TrtVersion::new(8, 6, 1).has_bf16_flag());
        assert!(TrtVersion::new(10, 0, 1).has_bf16_flag());
        assert!(TrtVersion::new(11, 0, 0).strongly_typed_only());
        assert!(!TrtVersion::new(8, 4, 1).export_skips_warmup());
        assert!(TrtVersion::new(8, 5, 1).export_skips_warmup());
    }

    #[test]
    fn the_scanner_takes_cpp_stream_spellings_and_rejects_garbage() {
        let e = parse_export_times("[ { \"computeMs\" : inf, \"latencyMs\" : -nan }\n]").unwrap();
        assert!(e[0]["computeMs"].is_infinite());
        assert!(e[0]["latencyMs"].is_nan());
        assert!(samples_ms(&e, TrtVersion::new(10, 0, 0), 0.0)
            .unwrap_err()
            .contains("inf"));
        assert_eq!(parse_export_times("[\n]\n").unwrap().len(), 0);
        assert!(parse_export_times("[ { \"computeMs\" : 1.0 }")
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_export_times("[ { \"computeMs\" : fast } ]")
            .unwrap_err()
            .contains("fast"));
        assert!(parse_export_times("{}").is_err());
    }

    #[test]
    fn qdq_nodes_are_found_by_their_op_type() {
        assert!(onnx_has_qdq(
            b"\x08\x07...\x12\x0eQuantizeLinear\x12\x10DequantizeLinear"
        ));
        assert!(!onnx_has_qdq(b"\x12\x04Conv\x12\x04Relu"));
    }

    #[test]
    fn error_lines_prefer_trtexecs_error_lines() {
        let text = "[I] a\n[E] Error[4]: bad shape\n[I] b\n&&&& FAILED TensorRT.trtexec\n";
        assert_eq!(error_lines(text), "[E] Error[4]: bad shape");
        assert_eq!(error_lines("one\ntwo\n"), "one | two");
        assert_eq!(error_lines(""), "it printed nothing");
    }
}
