//! A drop folder holding the residual CNN and a calibration folder: shared
//! by tests/int8.rs and the worker's tests (included there by path), which
//! is why it uses no binary of either crate.

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
