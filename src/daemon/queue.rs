//! The daemon's job queue: model paths in arrival order, each at most once.
//!
//! Only one model is measured at a time (two timings at once would spoil
//! each other), so the queue is plain FIFO. A path is unique while queued:
//! the many events one copy produces, or a file written twice before its
//! turn, give one job. The model being measured is not in the queue, so a
//! model replaced during its measurement is queued again and measured once
//! more afterwards.
//!
//! Each queued model carries whether its job measures again a failure worth
//! retrying (`retry_failures`, see `decide`): the flag travels with the
//! model instead of living in a set of its own beside the queue.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Queue {
    order: VecDeque<PathBuf>,
    /// The queued paths, each with its `retry_failures`.
    queued: HashMap<PathBuf, bool>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Appends `path` unless it is already waiting; true when appended.
    /// A path already waiting keeps its place, and measures a failure worth
    /// retrying again if either asked for it.
    pub fn push(&mut self, path: PathBuf, retry_failures: bool) -> bool {
        if let Some(retry) = self.queued.get_mut(&path) {
            *retry |= retry_failures;
            return false;
        }
        self.queued.insert(path.clone(), retry_failures);
        self.order.push_back(path);
        true
    }

    /// The next model to measure, with its `retry_failures`.
    pub fn pop(&mut self) -> Option<(PathBuf, bool)> {
        let path = self.order.pop_front()?;
        let retry_failures = self.queued.remove(&path).unwrap_or(false);
        Some((path, retry_failures))
    }

    /// Drops `path` (a model deleted while waiting); true when it was queued.
    pub fn remove(&mut self, path: &Path) -> bool {
        if self.queued.remove(path).is_none() {
            return false;
        }
        self.order.retain(|p| p != path);
        true
    }

    /// Drops every path under `folder` (a folder no longer watched).
    pub fn remove_folder(&mut self, folder: &Path) {
        self.order.retain(|p| p.parent() != Some(folder));
        self.queued.retain(|p, _| p.parent() != Some(folder));
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.queued.contains_key(path)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Waiting paths, next first.
    pub fn iter(&self) -> impl Iterator<Item = &PathBuf> {
        self.order.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_unique() {
        let mut q = Queue::new();
        assert!(q.push("/d/a.pt".into(), false));
        assert!(q.push("/d/b.pt".into(), false));
        assert!(
            !q.push("/d/a.pt".into(), false),
            "a queued path is not queued twice"
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(("/d/a.pt".into(), false)));
        // Once taken (being measured), the same path may be queued again.
        assert!(q.push("/d/a.pt".into(), false));
        assert_eq!(q.pop(), Some(("/d/b.pt".into(), false)));
        assert_eq!(q.pop(), Some(("/d/a.pt".into(), false)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn remove_drops_a_waiting_path() {
        let mut q = Queue::new();
        q.push("/d/a.pt".into(), false);
        q.push("/d/b.pt".into(), false);
        q.push("/e/c.pt".into(), false);
        assert!(q.remove(Path::new("/d/a.pt")));
        assert!(
            !q.remove(Path::new("/d/a.pt")),
            "removing twice is no error"
        );
        assert!(!q.contains(Path::new("/d/a.pt")));
        q.remove_folder(Path::new("/d"));
        assert_eq!(
            q.iter().collect::<Vec<_>>(),
            vec![&PathBuf::from("/e/c.pt")]
        );
    }

    #[test]
    fn a_retry_asked_for_while_queued_sticks_until_the_job_takes_it() {
        let mut q = Queue::new();
        q.push("/d/a.pt".into(), false);
        assert!(!q.push("/d/a.pt".into(), true));
        assert!(!q.push("/d/a.pt".into(), false), "asked once is enough");
        assert_eq!(q.pop(), Some(("/d/a.pt".into(), true)));
        q.push("/d/a.pt".into(), false);
        assert_eq!(
            q.pop(),
            Some(("/d/a.pt".into(), false)),
            "taken with the job"
        );
        q.push("/d/b.pt".into(), true);
        q.remove(Path::new("/d/b.pt"));
        q.push("/d/b.pt".into(), false);
        assert_eq!(
            q.pop(),
            Some(("/d/b.pt".into(), false)),
            "dropped with the model"
        );
    }
}
