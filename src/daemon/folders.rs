//! The drop folders themselves: checking them, listing their models, and
//! tidying what a killed process left behind.

use crate::daemon::watch::{self, Kind};
use precisiond_core::state_files;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The folder as an absolute path without links, so that event paths (the
/// watched path joined with a name) compare equal to ours.
pub fn resolve(folder: &Path, origin: &str) -> Result<PathBuf, String> {
    let path = folder.canonicalize().map_err(|e| {
        format!(
            "drop folder {}: {e}; create it (mkdir -p {}) or fix `folders` in {origin}",
            folder.display(),
            folder.display()
        )
    })?;
    if !path.is_dir() {
        return Err(format!(
            "drop folder {} is not a folder; fix `folders` in {origin}",
            folder.display()
        ));
    }
    Ok(path)
}

/// Removes what a killed worker or daemon left half-done: the temporary
/// files of atomic writes (`.NAME.XXXXXX.tmp`) of reports in the drop
/// folder and of anything in the state folder, and in its `quantized/` and
/// `tensorrt/` the partial models, job files, partial engines and timing
/// files (see `state_files`). Only names of ours, only regular files, and
/// no folder that is a link is entered. Call only while no worker runs.
/// Returns how many.
pub fn remove_stale_tmp(folder: &Path, state_dir: &Path) -> usize {
    let ours_in_drop = |name: &str| {
        name.starts_with('.') && name.ends_with(".tmp") && name.contains(".report.toml.")
    };
    let ours_in_state = |name: &str| name.starts_with('.') && name.ends_with(".tmp");
    let mut removed =
        remove_matching(folder, ours_in_drop) + remove_matching(state_dir, ours_in_state);
    for sub in [
        state_files::QUANTIZED_DIR,
        state_files::TENSORRT_DIR,
        state_files::PROBE_DIR,
    ] {
        removed += remove_matching(&state_dir.join(sub), |name| {
            state_files::is_leftover(sub, name)
        });
    }
    removed
}

fn remove_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> usize {
    // A link in place of a folder of ours is not entered: it would have
    // precisiond delete files elsewhere.
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular && matches(&name.to_string_lossy()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    log::info!(
                        "removed {:?}, left half-written by an interrupted run",
                        entry.path()
                    );
                    removed += 1;
                }
                Err(e) => log::warn!("cannot remove {:?}: {e}", entry.path()),
            }
        }
    }
    removed
}

/// The models in `folder` (regular files with a model name), oldest first
/// so that a restart measures them in about the order they arrived.
/// Symlinks with a model name are logged and left out.
pub fn models(folder: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(folder)
        .map_err(|e| format!("cannot list drop folder {}: {e}", folder.display()))?;
    let mut found: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if watch::kind(&path) != Kind::Model {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            log::warn!(
                "skipping {path:?}: it is a symbolic link, and precisiond never follows links in \
                 a drop folder; copy the model itself into the folder"
            );
        } else if meta.is_file() {
            found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tmp_files_of_ours_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        precisiond_core::fsutil::ensure_state_dir(&state).unwrap();
        for name in [".m.pt.report.toml.a1b2c3.tmp", ".users-own.tmp", "m.pt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(state.join(".status.toml.zz.tmp"), b"x").unwrap();
        assert_eq!(remove_stale_tmp(dir.path(), &state), 2);
        assert!(dir.path().join(".users-own.tmp").exists(), "not ours: kept");
        assert!(dir.path().join("m.pt").exists());
    }

    #[test]
    fn leftovers_of_quantizing_and_tensorrt_go_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        let quantized = state.join("quantized");
        let engines = state.join("tensorrt");
        std::fs::create_dir_all(&quantized).unwrap();
        std::fs::create_dir_all(&engines).unwrap();
        let leftovers = [
            quantized.join("m.pt.0123456789ab.int8.pt.tmp"),
            quantized.join("m.pt.0123456789ab.int8.job.toml"),
            quantized.join(".m.pt.0123456789ab.int8.job.toml.Xy12Zw.tmp"),
            engines.join("m.0123456789ab.trt10.8.int8.ffff.engine.part"),
            engines.join(".times-Ab12Cd.json"),
            engines.join(".m.0123456789ab.trt10.8.int8.ffff.engine.toml.Ab12Cd.tmp"),
        ];
        let kept = [
            quantized.join("m.pt.0123456789ab.int8.pt"),
            quantized.join("README.txt"),
            engines.join("m.0123456789ab.trt10.8.int8.ffff.engine"),
            engines.join("m.0123456789ab.trt10.8.int8.ffff.engine.toml"),
            engines.join("m.0123456789ab.trt10.8.int8.ffff.build.log"),
            engines.join("times.json"),
        ];
        for path in leftovers.iter().chain(&kept) {
            std::fs::write(path, b"x").unwrap();
        }
        // A folder with a leftover's name is not a file of ours.
        std::fs::create_dir(engines.join("d.engine.part")).unwrap();
        assert_eq!(remove_stale_tmp(dir.path(), &state), leftovers.len());
        for path in &leftovers {
            assert!(!path.exists(), "{path:?} removed");
        }
        for path in &kept {
            assert!(path.exists(), "{path:?} kept");
        }
        assert!(engines.join("d.engine.part").is_dir());
    }

    #[test]
    fn leftovers_behind_a_linked_subfolder_are_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        std::fs::create_dir(&state).unwrap();
        for sub in ["quantized", "tensorrt"] {
            std::fs::create_dir(elsewhere.path().join(sub)).unwrap();
            std::os::unix::fs::symlink(elsewhere.path().join(sub), state.join(sub)).unwrap();
        }
        let victims = [
            elsewhere
                .path()
                .join("quantized/m.pt.0123456789ab.int8.pt.tmp"),
            elsewhere.path().join("tensorrt/.times-Ab12Cd.json"),
        ];
        for path in &victims {
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(remove_stale_tmp(dir.path(), &state), 0);
        for path in &victims {
            assert!(path.exists(), "{path:?} kept");
        }
    }

    #[test]
    fn state_dir_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        std::os::unix::fs::symlink(elsewhere.path(), &state).unwrap();
        assert!(precisiond_core::fsutil::ensure_state_dir(&state).is_err());
    }
}
