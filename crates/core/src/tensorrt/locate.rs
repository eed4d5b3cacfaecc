//! Finding trtexec and the TensorRT version behind it: where to look
//! (configured path, PATH, JetPack's folder) and how to read the version
//! from the banner trtexec prints, since TensorRT offers no other way to
//! ask an executable its version.

// `probe` asks trtexec itself, with the same runner as the builds (its
// time limit and process-group kill).
use crate::child::{run_logged, RunLoggedError};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where JetPack (and NVIDIA's Debian packages) install trtexec, which is
/// not on PATH there.
pub const FALLBACK_DIRS: &[&str] = &["/usr/src/tensorrt/bin"];

/// The int8 reason on a CUDA device without TensorRT.
pub const NOT_FOUND_REASON: &str =
    "TensorRT's trtexec not found; PyTorch's quantized operators are CPU-only";

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
pub fn locate(
    configured: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, TrtexecError> {
    let fallback: Vec<PathBuf> = FALLBACK_DIRS.iter().map(PathBuf::from).collect();
    locate_in(configured, path_var, &fallback)
}

/// [`locate`] with the fallback folders given (for tests).
pub fn locate_in(
    configured: Option<&Path>,
    path_var: Option<&OsStr>,
    fallback_dirs: &[PathBuf],
) -> Result<PathBuf, TrtexecError> {
    if let Some(path) = configured {
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(TrtexecError::NotExecutable(path.to_path_buf()))
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
        .ok_or_else(|| TrtexecError::NotFound {
            fallback_dirs: fallback_dirs.to_vec(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `trtexec --help` and reads the version from its banner.
pub fn probe(path: &Path) -> Result<Trtexec, TrtexecError> {
    let out = run_logged(path, &["--help".into()], Duration::from_secs(60), None)?;
    match parse_version(&out.text) {
        Some(version) => Ok(Trtexec {
            path: path.to_path_buf(),
            version,
        }),
        None => Err(TrtexecError::NoVersion {
            path: path.to_path_buf(),
            printed: first_lines(&out.text, 3),
        }),
    }
}

/// Finds trtexec and asks it its version.
pub fn find(configured: Option<&Path>, path_var: Option<&OsStr>) -> Result<Trtexec, TrtexecError> {
    probe(&locate(configured, path_var)?)
}

/// Why there is no usable trtexec; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrtexecError {
    #[error(
        "the configured trtexec {} is not an executable file; PyTorch's quantized operators are \
         CPU-only",
        .0.display()
    )]
    NotExecutable(PathBuf),
    #[error(
        "{NOT_FOUND_REASON} (looked on PATH and in {}; set `trtexec` in the config to use another)",
        shown(fallback_dirs)
    )]
    NotFound { fallback_dirs: Vec<PathBuf> },
    /// `trtexec --help` could not be run to its end.
    #[error(transparent)]
    Run(#[from] RunLoggedError),
    #[error(
        "cannot tell the TensorRT version of {}: `trtexec --help` printed no \"[TensorRT vNNNN]\" \
         banner (trtexec prints one from TensorRT 8.0; it printed: {printed})",
        path.display()
    )]
    NoVersion { path: PathBuf, printed: String },
}

/// Folders, comma-separated, for a message.
fn shown(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    dirs.join(", ")
}

/// The first `n` non-empty lines of `text`, for a reason.
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
}
