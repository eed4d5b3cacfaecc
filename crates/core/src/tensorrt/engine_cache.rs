//! The engine cache in the state folder (`.precisiond/tensorrt/`): what
//! makes two engines different (the key, hashed into the file name), and
//! the facts kept beside each engine, so a cached engine's build time is
//! still reported. A build takes minutes; timing the same engine again
//! should not.

use super::TrtVersion;
use crate::fsutil::hex_sha256;
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What an engine's cache key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineKey<'a> {
    pub onnx_sha256: &'a str,
    pub version: TrtVersion,
    pub flags: &'a [OsString],
    /// sha256 of the calibration cache, when one is used: a new cache means a new engine.
    pub calibration_sha256: Option<&'a str>,
    /// The GPU, e.g. "NVIDIA Orin (8.7)": engines are not portable between GPUs.
    pub gpu: &'a str,
}

impl EngineKey<'_> {
    /// A short hash of everything that makes an engine different.
    pub fn hash(&self) -> String {
        // The calibration flag names a path; the cache's content is what counts.
        let flags: Vec<Cow<str>> = self
            .flags
            .iter()
            .map(|f| {
                let f = f.to_string_lossy();
                if f.starts_with("--calib=") {
                    "--calib".into()
                } else {
                    f
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

/// Where an engine's facts are kept: `ENGINE.toml` beside `ENGINE`. An
/// engine without this file is not taken from the cache (it may be one a
/// killed run left behind).
pub fn engine_facts_path(engine: &Path) -> PathBuf {
    let mut name = engine.as_os_str().to_owned();
    name.push(".toml");
    PathBuf::from(name)
}
