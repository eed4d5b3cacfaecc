//! What the worker keeps in a drop folder's state folder (`.precisiond/`,
//! see `fsutil`) and the names of what a killed run leaves half-done
//! there: the worker names its files through here and the daemon tidies
//! by the same names, so the two cannot drift apart.

use std::path::{Path, PathBuf};

/// Quantized models (`NAME.HASH.int8.pt`), for users to deploy.
pub const QUANTIZED_DIR: &str = "quantized";
/// TensorRT engines, their facts and logs.
pub const TENSORRT_DIR: &str = "tensorrt";
/// The hardware probe's results, one file per device and thread count
/// (`hardware::probe_cache`).
pub const PROBE_DIR: &str = "probe";

/// Where the quantized `model_name` (whose sha256 is `hash`) is kept in
/// `dir`, the state folder's `quantized/`.
pub fn quantized_model(dir: &Path, model_name: &std::ffi::OsStr, hash: &str) -> PathBuf {
    let mut name = model_name.to_os_string();
    name.push(format!(".{}.int8.pt", &hash[..12.min(hash.len())]));
    dir.join(name)
}

/// Where the dynamically quantized `model_name` is kept in `dir` (beside
/// the statically quantized one, `quantized_model`).
pub fn dynamic_quantized_model(dir: &Path, model_name: &std::ffi::OsStr, hash: &str) -> PathBuf {
    let mut name = model_name.to_os_string();
    name.push(format!(".{}.dynamic.int8.pt", &hash[..12.min(hash.len())]));
    dir.join(name)
}

/// The quantizing process writes the model here, then renames it to `out`.
pub fn partial_quantized(out: &Path) -> PathBuf {
    out.with_extension("pt.tmp")
}

/// The job description the worker hands its quantizing process.
pub fn quantize_job(out: &Path) -> PathBuf {
    out.with_extension("job.toml")
}

/// trtexec builds the engine here, then the worker renames it to `engine`.
pub fn partial_engine(engine: &Path) -> PathBuf {
    engine.with_extension("engine.part")
}

/// trtexec's `--exportTimes` file: `.times-XXXXXX.json` in the engine folder.
pub const TIMES_PREFIX: &str = ".times-";
pub const TIMES_SUFFIX: &str = ".json";

/// Whether `name` in the state subfolder `subdir` is a file a killed run
/// left half-done. Quantized models end in `.int8.pt`, engines in
/// `.engine` (see `tensorrt::EngineKey`); a `.NAME.XXXXXX.tmp` dotfile is
/// an atomic write's (`fsutil::write_atomic`: job files, engine facts).
pub fn is_leftover(subdir: &str, name: &str) -> bool {
    let atomic_write = name.starts_with('.') && name.ends_with(".tmp");
    atomic_write
        || match subdir {
            QUANTIZED_DIR => name.ends_with(".int8.pt.tmp") || name.ends_with(".int8.job.toml"),
            TENSORRT_DIR => {
                name.ends_with(".engine.part")
                    || (name.starts_with(TIMES_PREFIX) && name.ends_with(TIMES_SUFFIX))
            }
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_the_worker_makes_are_the_leftovers_the_daemon_knows() {
        let model = quantized_model(Path::new("/d/q"), "m.pt".as_ref(), "0123456789abcdef");
        assert_eq!(model, Path::new("/d/q/m.pt.0123456789ab.int8.pt"));
        let dynamic =
            dynamic_quantized_model(Path::new("/d/q"), "m.pt".as_ref(), "0123456789abcdef");
        assert_eq!(dynamic, Path::new("/d/q/m.pt.0123456789ab.dynamic.int8.pt"));
        for made in [
            partial_quantized(&model),
            quantize_job(&model),
            partial_quantized(&dynamic),
            quantize_job(&dynamic),
        ] {
            let name = made.file_name().unwrap().to_str().unwrap();
            assert!(is_leftover(QUANTIZED_DIR, name), "{name}");
            assert!(!is_leftover(TENSORRT_DIR, name), "{name}");
        }
        let engine = Path::new("/d/.precisiond/tensorrt/m.0123456789ab.trt10.8.int8.ffff.engine");
        let part = partial_engine(engine);
        let part = part.file_name().unwrap().to_str().unwrap();
        assert!(is_leftover(TENSORRT_DIR, part), "{part}");
        assert!(is_leftover(TENSORRT_DIR, ".times-a1B2c3.json"));
        assert!(is_leftover(QUANTIZED_DIR, ".m.job.toml.a1B2c3.tmp"));
        // The finished files stay.
        for kept in [
            "m.pt.0123456789ab.int8.pt",
            "m.pt.0123456789ab.dynamic.int8.pt",
            "m.engine",
            "m.engine.toml",
            "m.build.log",
            "notes.json",
            "times-a.json",
        ] {
            assert!(!is_leftover(QUANTIZED_DIR, kept), "{kept}");
            assert!(!is_leftover(TENSORRT_DIR, kept), "{kept}");
        }
    }
}
