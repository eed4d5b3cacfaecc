//! The sha256 of model files, remembered per drop folder in
//! `.precisiond/hashes.toml`, so that deciding whether a report is current
//! costs a `stat`, not a read of the whole model: a 4 GB model on an SD card
//! (60 MB/s) takes over a minute to hash.
//!
//! An entry holds for the file as the kernel describes it: device, inode,
//! size, modification and change time. Whoever rewrites the file changes
//! its change time (which no user can set), so a stale hash is never used.
//! A file that changes while it is hashed is not remembered.

use precisiond_core::fsutil::{self, open_regular, sha256_of};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file this cache lives in, inside a folder's state folder.
const FILE_NAME: &str = "hashes.toml";

/// What identifies one version of a file. TOML integers are signed: the
/// unsigned ones are kept as their bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Key {
    dev: i64,
    ino: i64,
    size: i64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Key {
    fn of(meta: &Metadata) -> Key {
        Key {
            dev: meta.dev() as i64,
            ino: meta.ino() as i64,
            size: meta.size() as i64,
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(flatten)]
    key: Key,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default)]
    file: Vec<Entry>,
}

/// One drop folder's entries, by (device, inode).
#[derive(Debug, Default)]
struct Folder {
    entries: HashMap<(i64, i64), Entry>,
    /// Looked up or added since loading: what is saved (entries of deleted
    /// models fall away).
    used: std::collections::HashSet<(i64, i64)>,
    changed: bool,
}

/// Shared by the daemon's threads; all I/O happens on the caller's thread.
#[derive(Debug, Default)]
pub struct HashCache {
    folders: Mutex<HashMap<PathBuf, Folder>>,
}

impl HashCache {
    pub fn new() -> HashCache {
        HashCache::default()
    }

    /// The sha256 and size of `model` (never following a link), from the
    /// cache when the file is unchanged, else read and remembered.
    pub fn sha256(&self, model: &Path) -> std::io::Result<(String, u64)> {
        let folder = model.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file = open_regular(model)?;
        let before = Key::of(&file.metadata()?);
        if let Some(sha) = self.lookup(&folder, &before) {
            return Ok((sha, before.size as u64));
        }
        let (sha, bytes) = sha256_of(&file)?;
        // Written to while we read: this hash may be of neither version.
        if Key::of(&file.metadata()?) == before {
            self.remember(&folder, before, sha.clone());
        }
        Ok((sha, bytes))
    }

    fn lookup(&self, folder: &Path, key: &Key) -> Option<String> {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        let f = folders
            .entry(folder.to_path_buf())
            .or_insert_with(|| load(folder));
        let id = (key.dev, key.ino);
        let entry = f.entries.get(&id).filter(|e| e.key == *key)?.sha256.clone();
        f.changed |= f.used.insert(id);
        Some(entry)
    }

    fn remember(&self, folder: &Path, key: Key, sha256: String) {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        let f = folders.entry(folder.to_path_buf()).or_default();
        let id = (key.dev, key.ino);
        f.entries.insert(id, Entry { key, sha256 });
        f.used.insert(id);
        f.changed = true;
    }

    /// Writes every folder's changed entries to its state folder. Errors
    /// are only logged: without the file, hashes are computed again.
    pub fn save(&self) {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        for (folder, f) in folders.iter_mut().filter(|(_, f)| f.changed) {
            let mut file: Vec<Entry> = f
                .entries
                .iter()
                .filter(|(id, _)| f.used.contains(id))
                .map(|(_, e)| e.clone())
                .collect();
            file.sort_by_key(|e| (e.key.dev, e.key.ino));
            let text = toml::to_string(&Persisted { file }).unwrap_or_default();
            let dir = fsutil::state_dir(folder);
            let written = fsutil::ensure_state_dir(&dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    fsutil::write_atomic(&dir.join(FILE_NAME), text.as_bytes())
                        .map_err(|e| e.to_string())
                });
            match written {
                Ok(()) => f.changed = false,
                Err(e) => log::warn!("cannot save the hash cache of {folder:?}: {e}"),
            }
        }
    }
}

/// A folder's saved entries; none when the file is missing or unreadable
/// (it is only a cache).
fn load(folder: &Path) -> Folder {
    let path = fsutil::state_dir(folder).join(FILE_NAME);
    let text = fsutil::read(&path, true).unwrap_or_default();
    let persisted: Persisted = toml::from_str(&String::from_utf8_lossy(&text)).unwrap_or_default();
    Folder {
        entries: persisted
            .file
            .into_iter()
            .map(|e| ((e.key.dev, e.key.ino), e))
            .collect(),
        used: Default::default(),
        changed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_of(bytes: &[u8]) -> String {
        precisiond_core::fsutil::hex_sha256(bytes)
    }

    #[test]
    fn a_saved_hash_is_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"first").unwrap();
        let cache = HashCache::new();
        assert_eq!(cache.sha256(&model).unwrap(), (sha_of(b"first"), 5));
        cache.save();
        // A new process: the saved entry answers for the same file...
        let saved = std::fs::read_to_string(dir.path().join(".precisiond/hashes.toml")).unwrap();
        assert!(saved.contains(&sha_of(b"first")), "{saved}");
        let again = HashCache::new();
        assert_eq!(again.sha256(&model).unwrap().0, sha_of(b"first"));
        // ...and not once it is rewritten, even to the same size and time.
        let mtime = std::fs::metadata(&model).unwrap().modified().unwrap();
        std::fs::write(&model, b"other").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&model)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(again.sha256(&model).unwrap().0, sha_of(b"other"));
    }

    #[test]
    fn a_cached_hash_is_really_read_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pt");
        std::fs::write(&model, b"content").unwrap();
        let cache = HashCache::new();
        cache.sha256(&model).unwrap();
        cache.save();
        // Forge the saved hash: a cache hit returns the forgery, which shows
        // the file was not read again.
        let path = dir.path().join(".precisiond/hashes.toml");
        let forged = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&sha_of(b"content"), &"0".repeat(64));
        std::fs::write(&path, forged).unwrap();
        assert_eq!(HashCache::new().sha256(&model).unwrap().0, "0".repeat(64));
    }

    #[test]
    fn links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link.pt")).unwrap();
        assert!(HashCache::new()
            .sha256(&dir.path().join("link.pt"))
            .is_err());
    }
}
