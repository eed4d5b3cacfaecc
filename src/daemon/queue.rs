//! The daemon's job queue: model paths in arrival order, each at most once.
//!
//! Only one model is measured at a time (two timings at once would spoil
//! each other), so the queue is plain FIFO. A path is unique while queued:
//! the many events one copy produces, or a file written twice before its
//! turn, give one job. The model being measured is not in the queue, so a
//! model replaced during its measurement is queued again and measured once
//! more afterwards.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Queue {
    order: VecDeque<PathBuf>,
    queued: HashSet<PathBuf>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Appends `path` unless it is already waiting; true when appended.
    pub fn push(&mut self, path: PathBuf) -> bool {
        if !self.queued.insert(path.clone()) {
            return false;
        }
        self.order.push_back(path);
        true
    }

    /// The next model to measure.
    pub fn pop(&mut self) -> Option<PathBuf> {
        let path = self.order.pop_front()?;
        self.queued.remove(&path);
        Some(path)
    }

    /// Drops `path` (a model deleted while waiting); true when it was queued.
    pub fn remove(&mut self, path: &Path) -> bool {
        if !self.queued.remove(path) {
            return false;
        }
        self.order.retain(|p| p != path);
        true
    }

    /// Drops every path under `folder` (a folder no longer watched).
    pub fn remove_folder(&mut self, folder: &Path) {
        self.order.retain(|p| p.parent() != Some(folder));
        self.queued.retain(|p| p.parent() != Some(folder));
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.queued.contains(path)
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
        assert!(q.push("/d/a.pt".into()));
        assert!(q.push("/d/b.pt".into()));
        assert!(
            !q.push("/d/a.pt".into()),
            "a queued path is not queued twice"
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some("/d/a.pt".into()));
        // Once taken (being measured), the same path may be queued again.
        assert!(q.push("/d/a.pt".into()));
        assert_eq!(q.pop(), Some("/d/b.pt".into()));
        assert_eq!(q.pop(), Some("/d/a.pt".into()));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn remove_drops_a_waiting_path() {
        let mut q = Queue::new();
        q.push("/d/a.pt".into());
        q.push("/d/b.pt".into());
        q.push("/e/c.pt".into());
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
}
