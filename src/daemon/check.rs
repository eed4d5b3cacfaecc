//! The checker: a thread that decides, for each model handed to it,
//! whether it needs measuring (`decide`), so that hashing a model never
//! runs on the daemon's main thread, which pings systemd's watchdog.
//! Answers come back on the daemon's channel.

use super::decide::{self, Decision, Inputs};
use crate::config::Config;
use crate::daemon::hashcache::HashCache;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// Why a model is looked at. It travels with the model, from the scan or
/// the event through the settle wait and the check into the queue, rather
/// than in sets keyed by path beside each of those steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Look {
    /// Measure again a failure worth retrying (found by the scan at
    /// start-up or after a reload, or its retry is due).
    pub retry_failures: bool,
    /// Found by a scan: "not measuring" is no news.
    pub quiet: bool,
}

/// A path found twice before it is checked was found for both reasons.
impl std::ops::BitOr for Look {
    type Output = Look;
    fn bitor(self, other: Look) -> Look {
        Look {
            retry_failures: self.retry_failures || other.retry_failures,
            quiet: self.quiet || other.quiet,
        }
    }
}

/// One model to look at.
#[derive(Debug)]
pub struct Request {
    pub model: PathBuf,
    pub config: Arc<Config>,
    pub look: Look,
}

/// The checker's answer.
#[derive(Debug)]
pub struct Checked {
    pub model: PathBuf,
    pub look: Look,
    /// Why not, when it needs no measuring.
    pub skip: Option<String>,
}

/// Starts the checker thread; `answer` wraps each answer into the
/// daemon's message type. The thread ends when the returned sender is
/// dropped.
pub fn start<M: Send + 'static>(
    hashes: Arc<HashCache>,
    answers: Sender<M>,
    answer: fn(Checked) -> M,
) -> std::io::Result<Sender<Request>> {
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                // A burst (a start-up scan) is checked as a whole, then the
                // hashes are saved once.
                for request in
                    std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok()))
                {
                    let decision = decide::decide(
                        &request.model,
                        &Inputs {
                            config: &request.config,
                            hashes: &hashes,
                            retry_failures: request.look.retry_failures,
                        },
                    );
                    let skip = match decision {
                        Decision::Skip(why) => Some(why),
                        Decision::Run(_) | Decision::Reject(_) => None,
                    };
                    let checked = Checked {
                        model: request.model,
                        look: request.look,
                        skip,
                    };
                    if answers.send(answer(checked)).is_err() {
                        return;
                    }
                }
                hashes.save();
            }
        })?;
    Ok(tx)
}
