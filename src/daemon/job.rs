//! One job, on a thread of its own: decides again (the model may have
//! changed while it was queued), then writes a rejection or waits for a
//! quiet machine and runs the worker (`supervise::measure`). This is the
//! real worker behind `machine::Edges::start_job`; the state machine only
//! sees the `JobEnd` it sends back.

use super::decide::{self, Decision, Inputs};
use super::quiet;
use crate::supervise::{self, Measured};
use precisiond_core::protocol::Progress;
use precisiond_core::report::{self, Report};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How a job's thread ended.
#[derive(Debug)]
pub enum JobEnd {
    /// Its report turned out current (or it was deleted): no worker ran.
    Skipped(String),
    /// Not read; this failed report was written (or could not be).
    Rejected(Report, std::io::Result<()>),
    /// A worker ran.
    Measured(Result<Measured, String>),
}

/// A job's thread: decides again (the model may have changed while it was
/// queued), then writes a rejection or runs the worker.
pub fn job_thread(
    model: &Path,
    inputs: &Inputs,
    worker: &Path,
    attempt: u32,
    stop: &AtomicBool,
    progress: impl FnMut(Progress),
) -> JobEnd {
    match decide::decide(model, inputs) {
        Decision::Skip(why) => JobEnd::Skipped(why),
        Decision::Reject(report) => {
            let written = precisiond_core::output::write_report(
                &report,
                &report::default_path(model),
                inputs.config.knobs.chart,
            );
            JobEnd::Rejected(*report, written)
        }
        Decision::Run(mut args) => {
            let config = inputs.config;
            args.started_busy = quiet::wait_for_quiet(
                model,
                config.knobs.busy_threshold,
                Duration::from_secs_f64(config.busy_wait_seconds),
                stop,
            );
            if attempt > 1 {
                log::info!(
                    "measuring {model:?} (attempt {attempt} of {})",
                    inputs.config.max_attempts
                );
            } else {
                log::info!("measuring {model:?}");
            }
            JobEnd::Measured(supervise::measure(worker, &args, attempt, stop, progress))
        }
    }
}
