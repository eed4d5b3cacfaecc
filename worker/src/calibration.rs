//! Calibration samples for INT8: the user's folder of inputs (`.pt` from
//! torch.save, `.npy`, JPEG/PNG images), or synthetic inputs when none is
//! given.

use crate::model;
use precisiond_core::settings::{CalibrationSettings, DType, InputSpec};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// ImageNet's statistics: torchvision's models expect them, and they are
/// what an image folder is normalised with when the settings give none.
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// One forward() call's inputs.
pub type Sample = Vec<Tensor>;

pub struct SampleSet {
    /// "synthetic" or the folder the samples came from.
    pub source: String,
    pub calibration: Vec<Sample>,
    /// Samples kept out of calibration to measure accuracy on; empty when
    /// there were too few, and accuracy is then measured on fresh inputs.
    pub held_out: Vec<Sample>,
    pub notes: Vec<String>,
}

/// Number of synthetic calibration batches when the user gives no data.
const SYNTHETIC_BATCHES: usize = 8;
/// With at least this many samples, a quarter is held out for accuracy.
const MIN_SAMPLES_TO_HOLD_OUT: usize = 4;

pub fn synthetic(specs: &[InputSpec], seed: i64) -> SampleSet {
    SampleSet {
        source: "synthetic".into(),
        calibration: (0..SYNTHETIC_BATCHES as i64)
            .map(|i| model::synthetic_inputs(specs, seed + i))
            .collect(),
        held_out: Vec::new(),
        notes: vec![
            "calibrated on synthetic random inputs: the INT8 timing is valid, but its accuracy \
             figures say little about real data; name a folder of real samples in the settings \
             file ([calibration] dir = \"...\") for meaningful accuracy"
                .into(),
        ],
    }
}

/// Why the calibration folder cannot be used; each names the file and
/// what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration folder {}: {error}", dir.display())]
    Folder { dir: PathBuf, error: std::io::Error },
    #[error(
        "cannot read calibration sample {} (expected a tensor saved with torch.save): {libtorch}",
        file.display()
    )]
    Pickled { file: PathBuf, libtorch: String },
    #[error("cannot read calibration sample {} as a .npy array: {error}", file.display())]
    Npy { file: PathBuf, error: tch::TchError },
    #[error(
        "calibration folder {} holds no .pt, .npy, .jpg or .png samples",
        dir.display()
    )]
    Empty { dir: PathBuf },
    #[error(
        "calibration sample {} holds {tensors} tensors but the model takes {inputs} inputs",
        file.display()
    )]
    Count {
        file: PathBuf,
        tensors: usize,
        inputs: usize,
    },
    #[error(
        "calibration sample {} has shape {shape:?} but the model's input is {spec}",
        file.display()
    )]
    Shape {
        file: PathBuf,
        shape: Vec<i64>,
        spec: Box<InputSpec>,
    },
    #[error(
        "calibration sample {} has dtype {kind:?} but the model's input is {spec}; save the \
         samples as {}",
        file.display(),
        spec.dtype.name()
    )]
    Dtype {
        file: PathBuf,
        kind: Kind,
        spec: Box<InputSpec>,
    },
    #[error(
        "image sample {} needs a model with one [N, C, H, W] float32 input",
        file.display()
    )]
    ImageModel { file: PathBuf },
    #[error("cannot read image {}: {error}", file.display())]
    Image { file: PathBuf, error: tch::TchError },
    #[error("cannot resize image {}: {error}", file.display())]
    Resize { file: PathBuf, error: tch::TchError },
    #[error("image {} has {channels} channels, the model expects {want}", file.display())]
    Channels {
        file: PathBuf,
        channels: i64,
        want: i64,
    },
    #[error("calibration mean/std need {0} values each (one per channel)")]
    MeanStd(i64),
}

/// The samples in `dir`, the calibration folder the settings name (already
/// resolved against the settings file's folder, see `SettingsDir`).
pub fn from_folder(
    settings: &CalibrationSettings,
    dir: &Path,
    specs: &[InputSpec],
) -> Result<SampleSet, CalibrationError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| CalibrationError::Folder {
            dir: dir.to_path_buf(),
            error,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_hidden(p))
        .collect();
    files.sort();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let ext = file
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let tensors = match ext.as_str() {
            "pt" | "pth" => {
                crate::shim::load_pickled_tensors(file).map_err(|e| CalibrationError::Pickled {
                    file: file.clone(),
                    libtorch: model::clean_torch_error(e),
                })?
            }
            "npy" => vec![
                Tensor::read_npy(file).map_err(|error| CalibrationError::Npy {
                    file: file.clone(),
                    error,
                })?,
            ],
            "jpg" | "jpeg" | "png" => vec![load_image(file, specs, settings)?],
            _ => {
                skipped.push(file.display().to_string());
                continue;
            }
        };
        samples.push(check_sample(file, tensors, specs)?);
    }
    if samples.is_empty() {
        return Err(CalibrationError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    let mut notes = Vec::new();
    if !skipped.is_empty() {
        notes.push(format!(
            "calibration files ignored (unknown type): {}",
            skipped.join(", ")
        ));
    }
    let held_out = if samples.len() >= MIN_SAMPLES_TO_HOLD_OUT {
        samples.split_off(samples.len() - (samples.len() / 4).max(1))
    } else {
        notes.push(format!(
            "only {} calibration samples: all were used for calibration and accuracy is measured \
             on fresh synthetic inputs; give at least {MIN_SAMPLES_TO_HOLD_OUT} to hold some out",
            samples.len()
        ));
        Vec::new()
    };
    Ok(SampleSet {
        source: dir.display().to_string(),
        calibration: samples,
        held_out,
        notes,
    })
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// A sample must match the model's inputs: same count, same shape (a
/// missing batch dimension of 1 is added), a compatible dtype.
fn check_sample(
    file: &Path,
    tensors: Vec<Tensor>,
    specs: &[InputSpec],
) -> Result<Sample, CalibrationError> {
    if tensors.len() != specs.len() {
        return Err(CalibrationError::Count {
            file: file.to_path_buf(),
            tensors: tensors.len(),
            inputs: specs.len(),
        });
    }
    tensors
        .into_iter()
        .zip(specs)
        .map(|(t, spec)| {
            let mut t = t;
            if t.size().len() + 1 == spec.shape.len() && spec.shape[0] == 1 {
                t = t.unsqueeze(0);
            }
            if t.size() != spec.shape {
                return Err(CalibrationError::Shape {
                    file: file.to_path_buf(),
                    shape: t.size(),
                    spec: Box::new(spec.clone()),
                });
            }
            let want = model::dtype_kind(spec.dtype);
            let floating =
                |k: Kind| matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
            let ok = t.kind() == want || (spec.dtype.is_float() && floating(t.kind()));
            if !ok {
                return Err(CalibrationError::Dtype {
                    file: file.to_path_buf(),
                    kind: t.kind(),
                    spec: Box::new(spec.clone()),
                });
            }
            Ok(t.to_kind(want))
        })
        .collect()
}

fn load_image(
    file: &Path,
    specs: &[InputSpec],
    settings: &CalibrationSettings,
) -> Result<Tensor, CalibrationError> {
    let spec = match specs {
        [spec] if spec.shape.len() == 4 && spec.dtype == DType::Float32 => spec,
        _ => {
            return Err(CalibrationError::ImageModel {
                file: file.to_path_buf(),
            })
        }
    };
    let (channels, height, width) = (spec.shape[1], spec.shape[2], spec.shape[3]);
    let image = tch::vision::image::load(file).map_err(|error| CalibrationError::Image {
        file: file.to_path_buf(),
        error,
    })?;
    let image = tch::vision::image::resize(&image, width, height).map_err(|error| {
        CalibrationError::Resize {
            file: file.to_path_buf(),
            error,
        }
    })?;
    let mut image = image.to_kind(Kind::Float) / 255.0;
    image = match (image.size()[0], channels) {
        (c, want) if c == want => image,
        (4, 3) => image.narrow(0, 0, 3),
        (3 | 4, 1) => image
            .narrow(0, 0, 3)
            .mean_dim(Some([0i64].as_slice()), true, Kind::Float),
        (1, 3) => image.expand([3, height, width], false).contiguous(),
        (c, want) => {
            return Err(CalibrationError::Channels {
                file: file.to_path_buf(),
                channels: c,
                want,
            })
        }
    };
    let (mean, std) = match (&settings.mean, &settings.std) {
        (Some(m), Some(s)) => (m.clone(), s.clone()),
        _ if channels == 3 => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
        _ => (vec![0.0; channels as usize], vec![1.0; channels as usize]),
    };
    if mean.len() != channels as usize || std.len() != channels as usize {
        return Err(CalibrationError::MeanStd(channels));
    }
    let mean = Tensor::from_slice(&mean)
        .to_kind(Kind::Float)
        .view([channels, 1, 1]);
    let std = Tensor::from_slice(&std)
        .to_kind(Kind::Float)
        .view([channels, 1, 1]);
    Ok(((image - mean) / std).unsqueeze(0))
}
