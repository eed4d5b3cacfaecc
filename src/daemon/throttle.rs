//! Throttled rewrites: the status files and the metrics textfile are
//! rewritten when something changed, but at most once per interval, so a
//! burst of 500 models, or a worker's progress lines, does not cost an
//! fsync each. One scheme for both files.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    /// Something changed since the last write.
    dirty: bool,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle with a write pending (nothing has been written yet).
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            dirty: true,
            last: None,
        }
    }

    /// Something the file shows changed.
    pub fn mark(&mut self) {
        self.dirty = true;
    }

    /// When a pending write that must wait for the interval is allowed;
    /// None when nothing is pending, or nothing was written yet (the write
    /// may then happen at once).
    pub fn next_due(&self) -> Option<Instant> {
        self.dirty
            .then(|| self.last.map(|t| t + self.interval))
            .flatten()
    }

    /// True when the file is to be written now: something changed and the
    /// last write is at least an interval ago, or `force`. Counts as the
    /// write.
    pub fn take(&mut self, now: Instant, force: bool) -> bool {
        let recent = self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval);
        if !self.dirty || (recent && !force) {
            return false;
        }
        self.dirty = false;
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(500);

    #[test]
    fn one_write_per_interval_and_only_when_something_changed() {
        let t0 = Instant::now();
        let mut t = Throttle::new(I);
        assert_eq!(t.next_due(), None, "the first write may happen at once");
        assert!(t.take(t0, false));
        assert!(!t.take(t0 + I * 4, false), "nothing changed");
        assert_eq!(t.next_due(), None);
        t.mark();
        assert!(!t.take(t0 + I / 2, false), "too soon");
        assert_eq!(t.next_due(), Some(t0 + I));
        t.mark();
        assert!(t.take(t0 + I, false), "two changes, one write");
        assert!(!t.take(t0 + I, false));
    }

    #[test]
    fn a_forced_write_ignores_the_interval_but_not_cleanliness() {
        let t0 = Instant::now();
        let mut t = Throttle::new(I);
        assert!(t.take(t0, true));
        assert!(!t.take(t0, true), "nothing changed");
        t.mark();
        assert!(t.take(t0 + I / 10, true));
        assert_eq!(t.next_due(), None);
    }
}
