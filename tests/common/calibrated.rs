//! A drop folder holding the residual CNN and a calibration folder, and how
//! its INT8 result is read: shared by tests/int8.rs and the worker's tests
//! (included there by path), which is why it uses no binary of either crate.

use std::path::{Path, PathBuf};

/// The committed test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tests/fixtures"))
        .find(|d| d.is_dir())
        .expect("tests/fixtures above the crate")
}

/// A drop folder with cnn_residual.pt calibrated from a copy of `samples`.
pub fn cnn_with_calibration(samples: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cnn_residual.pt");
    std::fs::copy(fixtures().join("models/cnn_residual.pt"), &model).unwrap();
    let target = dir.path().join("samples");
    std::fs::create_dir(&target).unwrap();
    for entry in std::fs::read_dir(samples).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.path().join("cnn_residual.pt.toml"),
        "[[inputs]]\nshape = [1, 3, 224, 224]\n\n[calibration]\ndir = \"samples\"\n",
    )
    .unwrap();
    (dir, model)
}

/// The least cosine to FP32 the residual CNN's INT8 result must keep when
/// calibrated on the committed samples (measured 0.99981 with libtorch 2.13).
pub const MIN_COSINE: f64 = 0.999;

/// Where `model`'s report is written: beside it, its name byte for byte
/// (a model's name need not be UTF-8).
pub fn report_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_os_string();
    name.push(".report.toml");
    PathBuf::from(name)
}

/// The int8 result of `model`'s report.
pub fn int8_result(model: &Path) -> toml::Table {
    let path = report_path(model);
    let report: toml::Table = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()))
        .parse()
        .unwrap();
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_table().unwrap().clone())
        .find(|r| r["precision"].as_str() == Some("int8"))
        .expect("an int8 result")
}
