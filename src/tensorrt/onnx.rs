//! The ONNX file TensorRT builds its engine from: which file it is (named
//! in the settings, else beside the model) and whether it carries its own
//! INT8 scales (Q/DQ nodes), which decides how an INT8 engine is built.

use crate::settings::SettingsDir;
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
) -> Result<Option<PathBuf>, String> {
    if let Some(named) = named {
        let path = settings.resolve("onnx", named)?;
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(format!(
                "the ONNX file {} (`onnx` in {}) does not exist",
                path.display(),
                settings.settings_path().display()
            ))
        };
    }
    let beside = model.with_extension("onnx");
    Ok(beside.is_file().then_some(beside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qdq_nodes_are_found_by_their_op_type() {
        assert!(onnx_has_qdq(
            b"\x08\x07...\x12\x0eQuantizeLinear\x12\x10DequantizeLinear"
        ));
        assert!(!onnx_has_qdq(b"\x12\x04Conv\x12\x04Relu"));
    }
}
