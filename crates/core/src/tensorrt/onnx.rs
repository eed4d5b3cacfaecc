//! The ONNX file TensorRT builds its engine from: which file it is (named
//! in the settings, else beside the model) and whether it carries its own
//! INT8 scales (Q/DQ nodes), which decides how an INT8 engine is built.

use crate::settings::{OutsideDropFolder, SettingsDir};
use std::path::{Path, PathBuf};

/// Whether an ONNX file quantizes explicitly: its graph has
/// QuantizeLinear/DequantizeLinear nodes (op types are plain strings in
/// the protobuf, so a byte search finds them).
pub fn onnx_has_qdq(bytes: &[u8]) -> bool {
    let needle = b"QuantizeLinear";
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The ONNX file for `model`: the one the settings name (resolved by
/// `settings`, like every path a settings file names, so the daemon's
/// confinement to the drop folder holds here too), else `NAME.onnx` beside
/// `NAME.pt`. Ok(None) when there is none; Err when the settings name a
/// file that does not exist or may not be read.
pub fn onnx_for(
    model: &Path,
    named: Option<&Path>,
    settings: &SettingsDir,
) -> Result<Option<PathBuf>, OnnxError> {
    if let Some(named) = named {
        let path = settings.resolve("onnx", named)?;
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(OnnxError::Missing {
                path,
                settings: settings.settings_path().to_path_buf(),
            })
        };
    }
    let beside = model.with_extension("onnx");
    // In a drop folder a link there is never followed, as for the model.
    let present = if settings.is_confined() {
        std::fs::symlink_metadata(&beside).is_ok_and(|m| m.is_file())
    } else {
        beside.is_file()
    };
    Ok(present.then_some(beside))
}

/// Why the ONNX file the settings name cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(transparent)]
    Outside(#[from] OutsideDropFolder),
    #[error("the ONNX file {} (`onnx` in {}) does not exist", path.display(), settings.display())]
    Missing { path: PathBuf, settings: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_beside_a_dropped_model_is_not_its_onnx_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("other.onnx");
        std::fs::write(&target, b"onnx").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("m.onnx")).unwrap();
        let settings = crate::settings::default_path(&model);
        let daemon = SettingsDir::of(&settings, true);
        assert_eq!(onnx_for(&model, None, &daemon).unwrap(), None);
        // `precisiond run` on the user's own files follows it.
        let user = SettingsDir::of(&settings, false);
        assert_eq!(
            onnx_for(&model, None, &user).unwrap(),
            Some(dir.path().join("m.onnx"))
        );
    }

    #[test]
    fn qdq_nodes_are_found_by_their_op_type() {
        assert!(onnx_has_qdq(
            b"\x08\x07...\x12\x0eQuantizeLinear\x12\x10DequantizeLinear"
        ));
        assert!(!onnx_has_qdq(b"\x12\x04Conv\x12\x04Relu"));
    }
}
