//! Per-model settings: the optional `NAME.pt.toml` beside a model.

use crate::accuracy::AccuracyOverrides;
use crate::devices::DeviceRequest;
use crate::precision::Precision;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The model's forward() arguments, in order.
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// Precisions to measure for this model (overrides the command line's
    /// and the config's default).
    pub precisions: Option<Vec<Precision>>,
    /// Time budget per precision, seconds.
    pub max_seconds: Option<f64>,
    pub calibration: Option<CalibrationSettings>,
    /// Devices to measure this model on: "auto" (the CPU and every CUDA
    /// device libtorch sees), "cpu", "cuda", "cuda:0", ... (overrides the
    /// config's; `--devices` overrides this).
    #[serde(default)]
    pub devices: Option<Vec<DeviceRequest>>,
    /// The ONNX file of the same model, for TensorRT on CUDA devices,
    /// relative to the settings file [default: NAME.onnx beside NAME.pt].
    #[serde(default)]
    pub onnx: Option<PathBuf>,
    /// A TensorRT INT8 calibration cache (passed to `trtexec --calib=`),
    /// relative to the settings file. Without one (and without Q/DQ nodes
    /// in the ONNX file) TensorRT's INT8 uses placeholder ranges.
    #[serde(default)]
    pub tensorrt_calibration_cache: Option<PathBuf>,
    /// `[accuracy]`: thresholds of the accuracy verdict for this model
    /// (min_cosine, min_sqnr_db, min_top1_agreement), each replacing the
    /// config's (or the command line's).
    #[serde(default)]
    pub accuracy: Option<AccuracyOverrides>,
    /// For an AOTInductor package `NAME.pt2` (FP32): the packages of its
    /// other precisions, relative to the settings file, where they are not
    /// `NAME.bf16.pt2`, `NAME.fp16.pt2`, `NAME.int8.pt2` beside it.
    #[serde(default)]
    pub variants: Option<std::collections::BTreeMap<Precision, PathBuf>>,
    /// For an AOTInductor family: the same model as TorchScript, relative
    /// to the settings file. It is measured in the same job on the same
    /// inputs, and the report sets both runtimes' medians side by side.
    #[serde(default)]
    pub torchscript: Option<PathBuf>,
    /// Operator libraries this model needs (shared objects registering
    /// its custom TorchScript operators), relative to the settings file,
    /// loaded after the config's `op_libraries`. `precisiond run` only: the
    /// daemon refuses them, since a library runs code as the service.
    #[serde(default)]
    pub op_libraries: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub shape: Vec<i64>,
    #[serde(default)]
    pub dtype: DType,
    /// Range of synthetic values: integers are drawn from [low, high),
    /// floats uniformly from [low, high]. Floats default to a standard
    /// normal distribution when no range is given.
    #[serde(default)]
    pub low: Option<f64>,
    #[serde(default)]
    pub high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSettings {
    /// Folder of sample inputs (`.pt`, `.npy`, images), relative to the
    /// settings file.
    pub dir: PathBuf,
    /// Image preprocessing: per-channel mean and std after scaling to [0, 1].
    #[serde(default)]
    pub mean: Option<Vec<f64>>,
    #[serde(default)]
    pub std: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    Float32,
    Float16,
    Bfloat16,
    Float64,
    Int64,
    Int32,
    Int8,
    Uint8,
    Bool,
}

impl DType {
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::Float32 | DType::Float16 | DType::Bfloat16 | DType::Float64
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Bfloat16 => "bfloat16",
            DType::Float64 => "float64",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Int8 => "int8",
            DType::Uint8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(i64::to_string).collect();
        write!(f, "[{}] {}", dims.join(", "), self.dtype.name())
    }
}

/// An example settings file, shown whenever a user has to write one.
pub const EXAMPLE: &str = r#"[[inputs]]
name = "image"
shape = [1, 3, 224, 224]
dtype = "float32"

# one [[inputs]] table per forward() argument, in order, e.g.
# [[inputs]]
# name = "tokens"
# shape = [1, 128]
# dtype = "int64"
# low = 0
# high = 30522"#;

/// Where a model's settings live by default: `resnet.pt` -> `resnet.pt.toml`.
pub fn default_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".toml");
    PathBuf::from(name)
}

/// Where the paths a settings file names (calibration folder, ONNX file,
/// TensorRT calibration cache) lead: they start at the settings file's
/// folder. When `confined` (the daemon, whose drop folder is untrusted),
/// such a path must be relative, without `..`, and no part of it may be a
/// symbolic link: a link (or `..`) would let whoever drops files make the
/// service read files it can read and they cannot. Unconfined (`precisiond
/// run` on the user's own files), absolute paths, `..` and links are the
/// user's to use.
#[derive(Debug, Clone)]
pub struct SettingsDir {
    settings: PathBuf,
    dir: PathBuf,
    confined: bool,
}

impl SettingsDir {
    pub fn of(settings_path: &Path, confined: bool) -> SettingsDir {
        let dir = match settings_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        SettingsDir {
            settings: settings_path.to_path_buf(),
            dir,
            confined,
        }
    }

    /// Whether paths must stay inside the drop folder (the daemon's jobs).
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// The settings file these paths come from.
    pub fn settings_path(&self) -> &Path {
        &self.settings
    }

    /// `named`, the value of the settings key `key`, as a path to open.
    /// Err (naming the key, the file and what to do) when a confined path
    /// is absolute, climbs with `..` or passes through a symbolic link. A
    /// path that does not exist (yet) is Ok: the caller says so when it
    /// opens it.
    pub fn resolve(&self, key: &str, named: &Path) -> Result<PathBuf, OutsideDropFolder> {
        if !self.confined {
            return Ok(self.dir.join(named));
        }
        let refuse = |why: Escape| OutsideDropFolder {
            key: key.to_owned(),
            settings: self.settings.clone(),
            dir: self.dir.clone(),
            why,
        };
        use std::path::Component;
        let mut path = self.dir.clone();
        for part in named.components() {
            match part {
                Component::Normal(name) => path.push(name),
                Component::CurDir => {}
                Component::ParentDir => return Err(refuse(Escape::Climbs(named.to_path_buf()))),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(Escape::Absolute(named.to_path_buf())))
                }
            }
        }
        // Every part below the folder, the last included, must be itself;
        // checked part by part, as a link may sit at any depth.
        let mut below = self.dir.clone();
        for part in named.components() {
            let Component::Normal(name) = part else {
                continue;
            };
            below.push(name);
            match std::fs::symlink_metadata(&below) {
                Ok(m) if m.file_type().is_symlink() => return Err(refuse(Escape::Link(below))),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) => return Err(refuse(Escape::Unreadable { path: below, error })),
            }
        }
        Ok(path)
    }
}

/// A path in a settings file that the daemon refuses to follow: it could
/// lead out of the drop folder ([`SettingsDir::resolve`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "`{key}` in {}: {why}; precisiond's daemon reads only files inside the drop folder {}: put \
     the file there (no symbolic link) and name it relative to the settings file",
    settings.display(),
    dir.display()
)]
pub struct OutsideDropFolder {
    /// The settings key that names the path ("onnx", "calibration.dir").
    pub key: String,
    pub settings: PathBuf,
    pub dir: PathBuf,
    pub why: Escape,
}

/// How a confined path could leave the drop folder.
#[derive(Debug, thiserror::Error)]
pub enum Escape {
    #[error("{} climbs out of the folder with `..`", .0.display())]
    Climbs(PathBuf),
    #[error("{} is an absolute path", .0.display())]
    Absolute(PathBuf),
    #[error("{} is a symbolic link", .0.display())]
    Link(PathBuf),
    #[error("cannot look at {}: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Why a settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file's errors, named with the file.
    #[error("settings file {}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<SettingsError>,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (toml's
    /// message names the key and the line).
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    #[error("{which}: every dimension of `shape` must be positive, got {shape:?}")]
    Shape { which: String, shape: Vec<i64> },
    #[error("{which}: `low` ({low}) must be below `high` ({high})")]
    Range { which: String, low: f64, high: f64 },
    #[error("`max_seconds` must be a positive number of seconds, got {0}")]
    MaxSeconds(f64),
    #[error(
        "`variants` names the other precisions' packages; the FP32 package is the model itself \
         (NAME.pt2)"
    )]
    Fp32Variant,
    /// An `[accuracy]` threshold out of its bounds (the accuracy module's
    /// message, which names the key).
    #[error("[accuracy] {0}")]
    Accuracy(String),
}

impl ModelSettings {
    pub fn load(path: &Path) -> Result<ModelSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|error| SettingsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text).map_err(|e| SettingsError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<ModelSettings, SettingsError> {
        let settings: ModelSettings = toml::from_str(text)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        for (i, input) in self.inputs.iter().enumerate() {
            let which = || input.name.clone().unwrap_or_else(|| format!("inputs[{i}]"));
            if input.shape.iter().any(|&d| d <= 0) {
                return Err(SettingsError::Shape {
                    which: which(),
                    shape: input.shape.clone(),
                });
            }
            if let (Some(low), Some(high)) = (input.low, input.high) {
                if low >= high {
                    return Err(SettingsError::Range {
                        which: which(),
                        low,
                        high,
                    });
                }
            }
        }
        if let Some(s) = self.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(SettingsError::MaxSeconds(s));
            }
        }
        if let Some(variants) = &self.variants {
            if variants.contains_key(&Precision::Fp32) {
                return Err(SettingsError::Fp32Variant);
            }
        }
        if let Some(overrides) = &self.accuracy {
            crate::accuracy::AccuracyThresholds::default()
                .with(overrides)
                .validate()
                .map_err(|e| SettingsError::Accuracy(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let settings = ModelSettings::parse(EXAMPLE).unwrap();
        assert_eq!(settings.inputs.len(), 1);
        assert_eq!(settings.inputs[0].shape, vec![1, 3, 224, 224]);
        assert_eq!(settings.inputs[0].dtype, DType::Float32);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values_naming_them() {
        let err = ModelSettings::parse("[[inputs]]\nshape = [1]\nshap = [2]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shap"), "{err}");
        let err = ModelSettings::parse("[[inputs]]\nshape = [1, 0]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("positive"), "{err}");
        let err = ModelSettings::parse("[[inputs]]\nshape = [1]\ndtype = \"float8\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("float8"), "{err}");
        let err = ModelSettings::parse("precisions = [\"fp64\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fp64"), "{err}");
    }

    #[test]
    fn callers_can_tell_the_kinds_apart() {
        assert!(matches!(
            ModelSettings::parse("[[inputs]]\nshape = [1, 0]\n"),
            Err(SettingsError::Shape { .. })
        ));
        assert!(matches!(
            ModelSettings::parse("max_seconds = -1.0\n"),
            Err(SettingsError::MaxSeconds(_))
        ));
        assert!(matches!(
            ModelSettings::parse("variants = { fp32 = \"m.pt2\" }\n"),
            Err(SettingsError::Fp32Variant)
        ));
        assert!(matches!(
            ModelSettings::parse("shap = 1\n"),
            Err(SettingsError::Syntax(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("m.pt.toml");
        assert!(matches!(
            ModelSettings::load(&missing),
            Err(SettingsError::Read { .. })
        ));
        std::fs::write(&missing, "[[inputs]]\nshape = [1]\nlow = 2.0\nhigh = 1.0\n").unwrap();
        let e = ModelSettings::load(&missing).unwrap_err();
        assert!(
            matches!(&e, SettingsError::InFile { error, .. } if matches!(**error, SettingsError::Range { .. })),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "settings file {}: inputs[0]: `low` (2) must be below `high` (1)",
                missing.display()
            )
        );
    }

    #[test]
    fn devices_and_tensorrt_files_are_read() {
        let s = ModelSettings::parse(
            "devices = [\"cpu\", \"cuda:0\"]\nonnx = \"m.onnx\"\ntensorrt_calibration_cache = \"m.cache\"\n",
        )
        .unwrap();
        assert_eq!(
            s.devices,
            Some(vec![DeviceRequest::Cpu, DeviceRequest::Cuda(0)])
        );
        assert_eq!(s.onnx, Some(PathBuf::from("m.onnx")));
        assert_eq!(s.tensorrt_calibration_cache, Some(PathBuf::from("m.cache")));
        let err = ModelSettings::parse("devices = [\"tpu\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[test]
    fn default_path_appends_toml() {
        assert_eq!(
            default_path(Path::new("/a/b/model.pt")),
            PathBuf::from("/a/b/model.pt.toml")
        );
    }

    /// A drop folder with a samples folder, a folder outside it, and links
    /// to each.
    fn drop_with_links() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let drop = dir.path().join("drop");
        std::fs::create_dir_all(drop.join("samples/inner")).unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, drop.join("out-link")).unwrap();
        std::os::unix::fs::symlink(drop.join("samples"), drop.join("in-link")).unwrap();
        (dir, drop, secret)
    }

    #[test]
    fn unconfined_paths_start_at_the_settings_folder_and_may_lead_anywhere() {
        let (_dir, drop, secret) = drop_with_links();
        let open = SettingsDir::of(&drop.join("m.pt.toml"), false);
        let resolve = |p: &Path| open.resolve("calibration.dir", p).unwrap();
        assert_eq!(resolve(Path::new("samples")), drop.join("samples"));
        assert_eq!(resolve(&secret), secret);
        assert_eq!(resolve(Path::new("../secret")), drop.join("../secret"));
        assert_eq!(resolve(Path::new("out-link")), drop.join("out-link"));
        // A settings file named without a folder: its paths start at ".".
        let bare = SettingsDir::of(Path::new("m.pt.toml"), false);
        assert_eq!(
            bare.resolve("onnx", Path::new("m.onnx")).unwrap(),
            PathBuf::from("./m.onnx")
        );
    }

    #[test]
    fn confined_paths_stay_inside_below_the_settings_folder() {
        let (_dir, drop, _secret) = drop_with_links();
        let confined = SettingsDir::of(&drop.join("m.pt.toml"), true);
        for (named, expected) in [
            ("samples", drop.join("samples")),
            ("./samples/inner", drop.join("samples/inner")),
            // Missing: the caller says so when it opens it.
            ("missing.onnx", drop.join("missing.onnx")),
            (
                "samples/missing/deeper",
                drop.join("samples/missing/deeper"),
            ),
        ] {
            assert_eq!(
                confined.resolve("onnx", Path::new(named)).unwrap(),
                expected,
                "{named}"
            );
        }
    }

    #[test]
    fn confined_paths_that_may_leave_the_folder_are_refused_naming_the_key() {
        let (_dir, drop, secret) = drop_with_links();
        let settings = drop.join("m.pt.toml");
        let confined = SettingsDir::of(&settings, true);
        let inside_absolute = drop.join("samples");
        for (named, why) in [
            (secret.as_path(), "is an absolute path"),
            // Absolute, even where it stays inside.
            (inside_absolute.as_path(), "is an absolute path"),
            (Path::new("../secret"), "climbs out of the folder with `..`"),
            (Path::new("samples/../samples"), "`..`"),
            // Links are refused wherever they lead.
            (Path::new("out-link"), "out-link is a symbolic link"),
            (Path::new("in-link"), "in-link is a symbolic link"),
            // ...and at any depth.
            (Path::new("in-link/inner"), "in-link is a symbolic link"),
            (Path::new("out-link/file.pt"), "out-link is a symbolic link"),
        ] {
            for key in ["calibration.dir", "onnx", "tensorrt_calibration_cache"] {
                let e = confined.resolve(key, named).unwrap_err();
                assert_eq!(e.key, key);
                let e = e.to_string();
                let head = format!("`{key}` in {}: ", settings.display());
                assert!(e.starts_with(&head), "{named:?}: {e}");
                assert!(e.contains(why), "{named:?}: {e}");
                assert!(e.contains("relative to the settings file"), "{e}");
            }
        }
    }
}
