//! File helpers every part of precisiond shares: reading untrusted files
//! without following links, hashing, writing atomically, and where the
//! state folder is.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The hidden folder precisiond keeps beside the models it measured
/// (status file, quantized models, TensorRT engines): a dotfile, so the
/// watcher never takes it for a model.
pub const STATE_DIR_NAME: &str = ".precisiond";

/// The state folder of a drop folder.
pub fn state_dir(folder: &Path) -> PathBuf {
    folder.join(STATE_DIR_NAME)
}

/// The state folder beside `model` (in the model's own folder).
pub fn state_dir_beside(model: &Path) -> PathBuf {
    state_dir(model.parent().unwrap_or_else(|| Path::new(".")))
}

/// Makes sure `.precisiond/` is a real folder of ours: a symlink placed
/// there would send the status file and the worker's artefacts elsewhere.
pub fn ensure_state_dir(dir: &Path) -> Result<(), StateDirError> {
    ensure_own_dir(dir)
}

/// Makes sure of `state/name` (`quantized/`, `tensorrt/`, see
/// [`crate::state_files`]) and of `state` itself as [`ensure_state_dir`]
/// does, creating what is missing; returns `state/name`. The worker writes
/// its artefacts there, so a link there would have it write elsewhere.
pub fn ensure_state_subdir(state: &Path, name: &str) -> Result<PathBuf, StateDirError> {
    ensure_own_dir(state)?;
    let dir = state.join(name);
    ensure_own_dir(&dir)?;
    Ok(dir)
}

/// Why a state folder cannot be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "cannot create {}: {error}; the drop folder must be writable by precisiond",
        dir.display()
    )]
    Create { dir: PathBuf, error: std::io::Error },
    #[error("cannot look at {}: {error}", dir.display())]
    Inspect { dir: PathBuf, error: std::io::Error },
    #[error(
        "{} is not a folder (a symbolic link or a file); remove it, precisiond recreates it",
        dir.display()
    )]
    NotAFolder { dir: PathBuf },
    #[error(
        "{} belongs to uid {owner}, not to uid {me} that precisiond runs as, so its content \
         could be changed under precisiond; remove it (rm -r {}), precisiond recreates it",
        dir.display(),
        dir.display()
    )]
    NotOurs { dir: PathBuf, owner: u32, me: u32 },
}

/// `dir` is a folder itself (no symbolic link) owned by the user this
/// process runs as, created (0755) when missing. Owned by someone else, a
/// folder's entries could be swapped for links under precisiond's feet.
fn ensure_own_dir(dir: &Path) -> Result<(), StateDirError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o755).create(dir) {
                // Created meanwhile (by the worker, or the daemon): checked below.
                Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(StateDirError::Create {
                        dir: dir.to_path_buf(),
                        error,
                    })
                }
                _ => {}
            }
            std::fs::symlink_metadata(dir)
        }
        found => found,
    }
    .map_err(|error| StateDirError::Inspect {
        dir: dir.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(StateDirError::NotAFolder {
            dir: dir.to_path_buf(),
        });
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(StateDirError::NotOurs {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// Lowercase hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, in hexadecimal.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 (hex) and length of everything `reader` yields, read in blocks:
/// a multi-gigabyte model never has to fit in memory.
pub fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// The last component of `path`, for reports and logs.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Opens `path` for reading only if it is a regular file itself: a symlink
/// is not followed (ELOOP), and a FIFO or device is refused without
/// blocking on it. The drop folder is untrusted input.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads a whole file; with `no_follow`, through [`open_regular`], which
/// closes the gap between a caller's check and this read.
pub fn read(path: &Path, no_follow: bool) -> std::io::Result<Vec<u8>> {
    if !no_follow {
        return std::fs::read(path);
    }
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// True when `e` says the disk (or the user's quota) is full: a write that
/// may succeed later, unlike a refusal.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    // The kind survives where the errno does not: tempfile wraps the
    // error to name the path.
    use std::io::ErrorKind;
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// Writes `contents` to `path` through a temporary file in the same folder,
/// an fsync, a rename and an fsync of the folder, so a reader (or a crash,
/// or a power cut) never sees a half-written file and a finished write
/// stays. A symlink at `path` is replaced, never written through.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = file_name(path);
    // A dotfile ending in .tmp: the watcher never takes it for a model.
    // Readable by everyone (tempfile's default is 0600): reports are for
    // the people who dropped the models, not only for the service user.
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the folder's entry is on disk.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_a_refusal() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let wrapped = std::io::Error::new(enospc.kind(), "at path /x/.r.tmp");
        assert!(is_disk_full(&enospc) && is_disk_full(&wrapped));
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(
            libc::EDQUOT
        )));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(
            libc::EACCES
        )));
        let mut full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap();
        assert!(is_disk_full(&full.write_all(b"x").unwrap_err()));
    }

    #[test]
    fn hashes_agree_whole_and_streamed() {
        let data = vec![7u8; 200_000];
        let (streamed, len) = sha256_of(&data[..]).unwrap();
        assert_eq!(len, 200_000);
        assert_eq!(streamed, hex_sha256(&data));
        assert_eq!(
            hex_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn atomic_write_replaces_a_link_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("r.toml");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn regular_reads_refuse_links_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.pt");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("l.pt");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read(&link, false).unwrap(), b"x");
        assert!(read(&link, true).is_err());
        assert_eq!(read(&file, true).unwrap(), b"x");
    }

    #[test]
    fn the_state_folder_is_hidden_beside_the_model() {
        assert_eq!(
            state_dir_beside(Path::new("/d/m.pt")),
            PathBuf::from("/d/.precisiond")
        );
        assert_eq!(state_dir(Path::new("/d")), PathBuf::from("/d/.precisiond"));
    }

    #[test]
    fn state_subfolders_are_created_and_must_be_real_folders() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        // Both levels are created when missing, and taken when there.
        let made = ensure_state_subdir(&state, "quantized").unwrap();
        assert_eq!(made, state.join("quantized"));
        assert!(std::fs::symlink_metadata(&made).unwrap().is_dir());
        assert_eq!(ensure_state_subdir(&state, "quantized").unwrap(), made);

        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), state.join("tensorrt")).unwrap();
        let e = ensure_state_subdir(&state, "tensorrt").unwrap_err();
        assert!(matches!(e, StateDirError::NotAFolder { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("tensorrt is not a folder"), "{e}");
        assert!(e.contains("remove it"), "{e}");
        std::fs::remove_file(state.join("tensorrt")).unwrap();
        std::fs::write(state.join("tensorrt"), b"x").unwrap();
        assert!(ensure_state_subdir(&state, "tensorrt").is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

        // A linked state folder is refused before its subfolder is made.
        let linked = dir.path().join("other");
        std::fs::create_dir(&linked).unwrap();
        let link_state = linked.join(".precisiond");
        std::os::unix::fs::symlink(elsewhere.path(), &link_state).unwrap();
        assert!(ensure_state_subdir(&link_state, "quantized").is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_folder_of_another_user_is_refused_naming_it() {
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".precisiond");
        // Root gives a subfolder away; anyone else meets root's /.
        let (result, theirs, owner) = if me == 0 {
            let quantized = state.join("quantized");
            std::fs::create_dir_all(&quantized).unwrap();
            std::os::unix::fs::chown(&quantized, Some(65534), Some(65534)).unwrap();
            (ensure_state_subdir(&state, "quantized"), quantized, 65534)
        } else {
            (
                ensure_state_dir(Path::new("/")).map(|()| PathBuf::new()),
                PathBuf::from("/"),
                0,
            )
        };
        let e = result.unwrap_err();
        assert!(
            matches!(&e, StateDirError::NotOurs { dir, owner: o, .. } if *dir == theirs && *o == owner),
            "{e:?}"
        );
        let e = e.to_string();
        let head = format!(
            "{} belongs to uid {owner}, not to uid {me}",
            theirs.display()
        );
        assert!(e.starts_with(&head), "{e}");
        assert!(e.contains(&format!("rm -r {}", theirs.display())), "{e}");
    }
}
