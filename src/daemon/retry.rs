//! Models to look at again later: failures worth retrying (a crashed or
//! hung worker) and reports that could not be written for a full disk.
//!
//! The daemon's one retry bookkeeping, kept across jobs: per model, the
//! failed attempts in a row and when it is looked at again. Whether the
//! next check or job measures a failure worth retrying again is not kept
//! here by path: it travels with the model (`check::Look`, then the
//! queue's flag), so it cannot outlive the model it was asked for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Retries {
    due: HashMap<PathBuf, Instant>,
    /// Attempts made in a row for a model whose last one failed in a way
    /// worth retrying.
    attempts: HashMap<PathBuf, u32>,
}

impl Retries {
    /// The attempt a job for `model` now is: 1, or one more than the failed
    /// attempts before it.
    pub fn attempt(&self, model: &Path) -> u32 {
        self.attempts.get(model).map_or(1, |n| n + 1)
    }

    /// Attempt `attempt` of `model` failed in a way worth retrying; it is
    /// looked at again at `at`.
    pub fn failed(&mut self, model: &Path, attempt: u32, at: Instant) {
        self.attempts.insert(model.to_path_buf(), attempt);
        self.due.insert(model.to_path_buf(), at);
    }

    /// Looks at `model` again at `at`, without counting an attempt (the
    /// disk was full: not the model's fault).
    pub fn later(&mut self, model: &Path, at: Instant) {
        self.due.insert(model.to_path_buf(), at);
    }

    /// The model changed, succeeded, failed for good or is gone: start over.
    pub fn forget(&mut self, model: &Path) {
        self.due.remove(model);
        self.attempts.remove(model);
    }

    pub fn forget_folder(&mut self, folder: &Path) {
        self.due.retain(|p, _| p.parent() != Some(folder));
        self.attempts.retain(|p, _| p.parent() != Some(folder));
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Models whose time has come, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut ready: Vec<(Instant, PathBuf)> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, at)| (*at, p.clone()))
            .collect();
        ready.sort();
        for (_, p) in &ready {
            self.due.remove(p);
        }
        ready.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn attempts_count_up_and_start_over_when_forgotten() {
        let mut r = Retries::default();
        let m = Path::new("/d/m.pt");
        let now = Instant::now();
        assert_eq!(r.attempt(m), 1);
        r.failed(m, 1, now + Duration::from_secs(5));
        assert_eq!(r.attempt(m), 2);
        assert!(r.take_due(now).is_empty());
        assert_eq!(r.take_due(now + Duration::from_secs(5)), [m]);
        assert_eq!(r.attempt(m), 2, "taking it does not reset the count");
        r.later(m, now);
        assert_eq!(r.attempt(m), 2, "a full disk is not an attempt");
        r.forget(m);
        assert_eq!((r.attempt(m), r.next_due()), (1, None));
    }

    #[test]
    fn due_models_come_earliest_first_and_a_folder_is_forgotten_whole() {
        let mut r = Retries::default();
        let now = Instant::now();
        let (a, b, c) = (
            Path::new("/d/a.pt"),
            Path::new("/d/b.pt"),
            Path::new("/e/c.pt"),
        );
        r.failed(a, 1, now + Duration::from_secs(2));
        r.later(b, now + Duration::from_secs(1));
        r.failed(c, 2, now + Duration::from_secs(3));
        assert_eq!(r.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(r.take_due(now + Duration::from_secs(2)), [b, a]);
        r.failed(a, 1, now);
        r.forget_folder(Path::new("/d"));
        assert_eq!((r.attempt(a), r.attempt(c)), (1, 3));
        assert_eq!(r.take_due(now + Duration::from_secs(9)), [c]);
    }
}
