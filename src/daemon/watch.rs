//! Watching the drop folders: which names are models, what an inotify event
//! means for them, and when a written file is complete.
//!
//! The watcher is `notify`'s inotify backend: a thread blocked in the
//! kernel, so an idle daemon wakes for nothing. Folders are watched without
//! recursion; precisiond's own `.precisiond/` state folder is therefore never
//! even seen.
//!
//! A file is only taken once writing has finished: inotify says so with
//! IN_CLOSE_WRITE (a writer closed it) or IN_MOVED_TO (it was moved in
//! whole). A creation or a write alone says nothing, since a slow copy
//! pauses between writes. The [`Settler`] then waits until the size and
//! modification time have stayed the same for the settle time, so a writer
//! that closes and reopens the file (chunked uploads) is waited for too.

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// File name endings of models precisiond measures (TorchScript archives).
/// TorchScript models and AOTInductor packages (`.pt2`).
pub const MODEL_EXTENSIONS: [&str; 5] = [
    "pt",
    "pth",
    "ts",
    "torchscript",
    precisiond_core::aoti::EXTENSION,
];

/// What a file in a drop folder is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A model to measure.
    Model,
    /// `MODEL.toml`: the settings of this model.
    Settings(PathBuf),
    /// `MODEL.report.toml`: the report of this model.
    Report(PathBuf),
    /// `NAME.bf16.pt2` (or `.fp16`, `.int8`): a package of the AOTInductor
    /// family of `NAME.pt2`, measured with it, into its report.
    Variant(PathBuf),
    /// Anything else: hidden or temporary files, other file types.
    Ignored,
}

/// Classifies `path` by its name. Dotfiles (which covers `.precisiond/` and
/// the `.NAME.XXXX.tmp` files of atomic writes), `*.part`, `*.tmp` and `*~`
/// are never models, whatever else their name says. Names are compared as
/// bytes: a name that is not UTF-8 is still a file a user may have dropped.
pub fn kind(path: &Path) -> Kind {
    use std::os::unix::ffi::OsStrExt;
    let Some(name) = path.file_name().map(OsStr::as_bytes) else {
        return Kind::Ignored;
    };
    if name.starts_with(b".")
        || name.ends_with(b".part")
        || name.ends_with(b".tmp")
        || name.ends_with(b"~")
    {
        return Kind::Ignored;
    }
    let sidecar = |model: &[u8], make: fn(PathBuf) -> Kind| {
        let variant =
            precisiond_core::aoti::variant_of(Path::new(OsStr::from_bytes(model))).is_some();
        if is_model_name(model) && !variant {
            make(path.with_file_name(OsStr::from_bytes(model)))
        } else {
            Kind::Ignored
        }
    };
    if let Some(model) = name.strip_suffix(b".report.toml") {
        return sidecar(model, Kind::Report);
    }
    if let Some(model) = name.strip_suffix(b".toml") {
        return sidecar(model, Kind::Settings);
    }
    if let Some((head, _)) = precisiond_core::aoti::variant_of(path) {
        return Kind::Variant(head);
    }
    if is_model_name(name) {
        Kind::Model
    } else {
        Kind::Ignored
    }
}

fn is_model_name(name: &[u8]) -> bool {
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => {
            let ext = &name[dot + 1..];
            MODEL_EXTENSIONS
                .iter()
                .any(|m| m.as_bytes().eq_ignore_ascii_case(ext))
        }
        _ => false,
    }
}

/// What an inotify event means for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Writing to this path finished (closed after writing, or moved in).
    Written(PathBuf),
    /// Data was written to this path; the writer may still be at it.
    Writing(PathBuf),
    /// The path is gone (deleted or moved away).
    Removed(PathBuf),
    /// The kernel dropped events (queue overflow): look at every folder again.
    Rescan,
}

/// Translates one `notify` event. Paths are not filtered here.
pub fn changes(event: &Event) -> Vec<Change> {
    if event.need_rescan() {
        return vec![Change::Rescan];
    }
    let all = |make: fn(PathBuf) -> Change| event.paths.iter().cloned().map(make).collect();
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => all(Change::Written),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => all(Change::Written),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => all(Change::Removed),
        // inotify also reports a rename inside one folder as From + To;
        // Both repeats them as [from, to].
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => match event.paths.as_slice() {
            [from, to] => vec![Change::Removed(from.clone()), Change::Written(to.clone())],
            _ => Vec::new(),
        },
        EventKind::Modify(ModifyKind::Data(_)) => all(Change::Writing),
        EventKind::Remove(_) => all(Change::Removed),
        // Creation, opening, reading, attribute changes: nothing to act on.
        _ => Vec::new(),
    }
}

/// Starts watching `folders` (not recursively); every event goes to
/// `handler`, on notify's own thread.
pub fn start(
    folders: &[PathBuf],
    handler: impl notify::EventHandler,
) -> Result<RecommendedWatcher, String> {
    let mut watcher = notify::recommended_watcher(handler)
        .map_err(|e| format!("cannot start watching files: {e}; {}", INOTIFY_HINT))?;
    for folder in folders {
        add(&mut watcher, folder)?;
    }
    Ok(watcher)
}

const INOTIFY_HINT: &str =
    "if the limit of inotify instances or watches is reached, raise fs.inotify.max_user_instances \
     or fs.inotify.max_user_watches with sysctl";

pub fn add(watcher: &mut RecommendedWatcher, folder: &Path) -> Result<(), String> {
    watcher
        .watch(folder, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}; {INOTIFY_HINT}", folder.display()))
}

pub fn remove(watcher: &mut RecommendedWatcher, folder: &Path) {
    if let Err(e) = watcher.unwatch(folder) {
        log::debug!("unwatching {}: {e}", folder.display());
    }
}

/// Size and modification time: a file whose fingerprint stayed the same
/// for the settle time is complete.
pub type Fingerprint = (u64, SystemTime);

/// Size and modification time, without following a symlink.
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Waits, per path, until a written file has kept its size and modification
/// time for the settle time. Each pending path carries a `T` (what found
/// it), merged with `|` when it is written again before it settles. The
/// file system is not read here: the caller passes fingerprints in.
#[derive(Debug)]
pub struct Settler<T> {
    pending: HashMap<PathBuf, Pending<T>>,
}

impl<T> Default for Settler<T> {
    fn default() -> Self {
        Settler {
            pending: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending<T> {
    due: Instant,
    seen: Option<Fingerprint>,
    tag: T,
}

impl<T: Copy + std::ops::BitOr<Output = T>> Settler<T> {
    /// Writing finished (`seen`: the file's fingerprint now): `path` is
    /// taken after the settle time unless it changes again.
    pub fn written(
        &mut self,
        path: PathBuf,
        seen: Option<Fingerprint>,
        tag: T,
        now: Instant,
        settle: std::time::Duration,
    ) {
        let tag = match self.pending.get(&path) {
            Some(p) => p.tag | tag,
            None => tag,
        };
        self.pending.insert(
            path,
            Pending {
                due: now + settle,
                seen,
                tag,
            },
        );
    }

    /// More data arrived: a pending path waits a full settle time again.
    /// Paths not pending are left alone (their writer has not closed yet).
    pub fn writing(&mut self, path: &Path, now: Instant, settle: std::time::Duration) {
        if let Some(p) = self.pending.get_mut(path) {
            p.due = now + settle;
        }
    }

    pub fn forget(&mut self, path: &Path) {
        self.pending.remove(path);
    }

    pub fn forget_folder(&mut self, folder: &Path) {
        self.pending.retain(|p, _| p.parent() != Some(folder));
    }

    /// When the next pending path is due; None when nothing is pending (the
    /// daemon then sleeps until an event comes).
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// Paths whose settle time is over and that did not change meanwhile
    /// (`fingerprint` says what they look like now), in the order they
    /// became due, each with its tag. A path that changed waits again; one
    /// that vanished is dropped.
    pub fn take_ready(
        &mut self,
        now: Instant,
        settle: std::time::Duration,
        fingerprint: impl Fn(&Path) -> Option<Fingerprint>,
    ) -> Vec<(PathBuf, T)> {
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(path, _)| path.clone())
            .collect();
        let mut ready = Vec::new();
        for path in due {
            let before = self.pending[&path];
            match fingerprint(&path) {
                None => {
                    self.pending.remove(&path);
                }
                Some(seen) if Some(seen) == before.seen => {
                    self.pending.remove(&path);
                    ready.push((before.due, path, before.tag));
                }
                Some(seen) => {
                    self.pending.insert(
                        path,
                        Pending {
                            due: now + settle,
                            seen: Some(seen),
                            tag: before.tag,
                        },
                    );
                }
            }
        }
        ready.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        ready
            .into_iter()
            .map(|(_, path, tag)| (path, tag))
            .collect()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.pending.contains_key(path)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names() {
        let k = |n: &str| kind(&Path::new("/d").join(n));
        assert_eq!(k("resnet.pt"), Kind::Model);
        assert_eq!(k("a b ✓.PTH"), Kind::Model);
        assert_eq!(k("line\nbreak.ts"), Kind::Model);
        assert_eq!(k("m.torchscript"), Kind::Model);
        for ignored in [
            ".hidden.pt",
            precisiond_core::fsutil::STATE_DIR_NAME,
            "m.pt.part",
            "m.pt.tmp",
            ".m.pt.report.toml.abc123.tmp",
            "m.pt~",
            "notes.txt",
            "pt",
            ".pt",
            "x.toml",
            "m.onnx",
        ] {
            assert_eq!(k(ignored), Kind::Ignored, "{ignored:?}");
        }
        assert_eq!(k("m.pt.toml"), Kind::Settings("/d/m.pt".into()));
        assert_eq!(k("m.pt.report.toml"), Kind::Report("/d/m.pt".into()));
        assert_eq!(k("m.pt.report.toml.part"), Kind::Ignored);
    }

    #[test]
    fn a_pt2_family_is_one_model_whose_variants_lead_to_it() {
        let k = |name: &str| kind(Path::new("/d").join(name).as_path());
        assert_eq!(k("resnet.pt2"), Kind::Model);
        assert_eq!(k("resnet.bf16.pt2"), Kind::Variant("/d/resnet.pt2".into()));
        assert_eq!(k("resnet.INT8.pt2"), Kind::Variant("/d/resnet.pt2".into()));
        assert_eq!(k("resnet.pt2.toml"), Kind::Settings("/d/resnet.pt2".into()));
        assert_eq!(
            k("resnet.pt2.report.toml"),
            Kind::Report("/d/resnet.pt2".into())
        );
        // A variant has no settings or report of its own: its family's are used.
        assert_eq!(k("resnet.bf16.pt2.toml"), Kind::Ignored);
        assert_eq!(k("resnet.bf16.pt2.report.toml"), Kind::Ignored);
        assert_eq!(k("resnet.bf16.pt2.part"), Kind::Ignored);
    }

    #[test]
    fn non_utf8_names_are_classified() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new("/d").join(OsStr::from_bytes(b"caf\xe9.pt"));
        assert_eq!(kind(&p), Kind::Model);
        let settings = Path::new("/d").join(OsStr::from_bytes(b"caf\xe9.pt.toml"));
        assert_eq!(kind(&settings), Kind::Settings(p));
    }

    #[test]
    fn settles_only_when_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.pt");
        std::fs::write(&path, b"abc").unwrap();
        let settle = Duration::from_millis(50);
        let mut s = Settler::<bool>::default();
        let t0 = Instant::now();
        s.written(path.clone(), fingerprint(&path), false, t0, settle);
        assert!(
            s.take_ready(t0, settle, fingerprint).is_empty(),
            "not before the settle time"
        );
        // More data during the settle time: it waits again.
        s.writing(&path, t0 + Duration::from_millis(40), settle);
        assert!(s
            .take_ready(t0 + Duration::from_millis(60), settle, fingerprint)
            .is_empty());
        std::fs::write(&path, b"abcdef").unwrap();
        let t1 = t0 + Duration::from_millis(100);
        assert!(
            s.take_ready(t1, settle, fingerprint).is_empty(),
            "size changed: waits again"
        );
        assert_eq!(
            s.take_ready(t1 + settle, settle, fingerprint),
            vec![(path.clone(), false)]
        );
        assert!(s.is_empty());
        // A vanished file is dropped.
        s.written(path.clone(), fingerprint(&path), false, t1, settle);
        std::fs::remove_file(&path).unwrap();
        assert!(s
            .take_ready(t1 + settle * 2, settle, fingerprint)
            .is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn a_path_written_again_keeps_what_found_it_first() {
        let settle = Duration::from_millis(50);
        let seen = Some((3, SystemTime::UNIX_EPOCH));
        let same = |_: &Path| seen;
        let mut s = Settler::<bool>::default();
        let t0 = Instant::now();
        s.written("/d/a.pt".into(), seen, true, t0, settle);
        s.written("/d/a.pt".into(), seen, false, t0, settle);
        s.written("/d/b.pt".into(), seen, false, t0, settle);
        assert_eq!(
            s.take_ready(t0 + settle, settle, same),
            vec![("/d/a.pt".into(), true), ("/d/b.pt".into(), false)]
        );
    }

    #[test]
    fn events_translate() {
        let ev = |kind, paths: &[&str]| {
            let mut e = Event::new(kind);
            for p in paths {
                e = e.add_path(PathBuf::from(p));
            }
            e
        };
        assert_eq!(
            changes(&ev(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/d/a.pt"]
            )),
            vec![Change::Written("/d/a.pt".into())]
        );
        assert_eq!(
            changes(&ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/d/.a.part", "/d/a.pt"]
            )),
            vec![
                Change::Removed("/d/.a.part".into()),
                Change::Written("/d/a.pt".into())
            ]
        );
        assert!(changes(&ev(
            EventKind::Create(notify::event::CreateKind::File),
            &["/d/a.pt"]
        ))
        .is_empty());
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(changes(&rescan), vec![Change::Rescan]);
    }
}
