//! libtorch's quantized CPU engine for this machine: x86 (fbgemm with
//! oneDNN) on x86, qnnpack on ARM, from those this libtorch has. Both INT8
//! methods on the CPU select it before they run.

use crate::shim;

/// The preferred engine among those libtorch reports.
pub fn choose(supported: &[String]) -> Option<String> {
    let preferred: &[&str] = if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        &["x86", "fbgemm", "onednn", "qnnpack"]
    } else {
        &["qnnpack", "onednn", "x86", "fbgemm"]
    };
    preferred
        .iter()
        .find(|e| supported.iter().any(|s| s == *e))
        .map(|e| (*e).to_owned())
}

/// Why no engine could be selected.
pub enum NoEngine {
    /// libtorch has none for the CPU: INT8 is unsupported here.
    Missing(String),
    /// Listing or selecting one failed.
    Failed(String),
}

/// Chooses the engine and makes it libtorch's current one.
pub fn select() -> Result<String, NoEngine> {
    let engines = shim::supported_qengines()
        .map_err(|e| NoEngine::Failed(format!("cannot list libtorch's quantized engines: {e}")))?;
    let engine = choose(&engines).ok_or_else(|| {
        NoEngine::Missing(format!(
            "this libtorch has no quantized CPU engine (it reports: {engines:?})"
        ))
    })?;
    shim::set_qengine(&engine)
        .map_err(|e| NoEngine::Failed(format!("cannot select quantized engine {engine}: {e}")))?;
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_follows_the_architecture_and_what_libtorch_has() {
        let all: Vec<String> = ["qnnpack", "onednn", "x86", "fbgemm"]
            .map(String::from)
            .to_vec();
        let chosen = choose(&all).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(chosen, "x86");
        } else {
            assert_eq!(chosen, "qnnpack");
        }
        assert_eq!(choose(&["qnnpack".to_owned()]).unwrap(), "qnnpack");
        assert_eq!(choose(&[]), None);
    }
}
