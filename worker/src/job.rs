//! One measurement job, in two steps:
//!
//! 1. [`load`]: read the settings, detect the hardware, load the model and
//!    compute its FP32 outputs on the job's inputs: one `Job` and its
//!    `Model` (`crate::context`), built once;
//! 2. [`run`]: every precision on every device through the plan's method
//!    (`crate::measure`), timed, compared with FP32 and judged, into the
//!    report.
//!
//! Here the model file is read, the report started from the core's
//! skeleton, and written once both steps are done (or one has failed).
//!
//! This is the only process of precisiond that loads libtorch; a crash
//! inside libtorch ends only this job.

mod load;
mod progress;
mod run;

use crate::cuda::CudaLoad;
use crate::shim;
use crate::supervisor::send;
use precisiond_core::fsutil::{self, hex_sha256};
use precisiond_core::job::JobSpec;
use precisiond_core::protocol;
use precisiond_core::report::{self, Report, Status};

/// What a job ended with: a report that says ok, or one that says failed.
pub struct JobOutcome {
    pub report: Report,
}

/// Why a job ended without a report.
pub enum JobError {
    /// The model file is missing or unreadable, or the report cannot be
    /// written: the message says what to do.
    Refused(String),
    /// The report could not be written because the disk is full.
    DiskFull(String),
}

/// Runs the job and writes its report. Errors before a report can be
/// written (the model file is missing or unreadable) come back as `Err`.
pub fn run_job(opts: &JobSpec, cuda_load: &CudaLoad) -> Result<JobOutcome, JobError> {
    let started = report::now();
    let libtorch = shim::libtorch_version();
    send(&protocol::WorkerMessage::Libtorch {
        version: libtorch.clone(),
    });
    let bytes = fsutil::read(&opts.model, opts.untrusted_folder).map_err(|e| {
        JobError::Refused(format!("cannot read model {}: {e}", opts.model.display()))
    })?;
    let mut report = begin_report(opts, &bytes, started, libtorch);
    tch::set_num_threads(opts.knobs.threads as i32);
    let _no_grad = tch::no_grad_guard();

    shim::collect_warnings();
    let measured = load::load(opts, cuda_load, bytes, &mut report)
        .map(|(job, model)| run::run(&job, model, &mut report));
    if let Err(error) = measured {
        report.status = Status::Failed;
        report.error = Some(error);
    }
    for warning in shim::take_warnings() {
        log::info!("libtorch warned: {warning}");
        report.notes.push(format!("libtorch warned: {warning}"));
    }
    report.run.finished = report::now();
    // The report this one replaces: its medians stay beside the new ones.
    if let Ok(previous) = precisiond_core::report::load(&opts.report) {
        precisiond_core::regression::attach(&previous, &mut report);
    }
    precisiond_core::output::write_report(&report, &opts.report, opts.knobs.chart).map_err(
        |e| {
            let message = format!("cannot write report {}: {e}", opts.report.display());
            if fsutil::is_disk_full(&e) {
                JobError::DiskFull(message)
            } else {
                JobError::Refused(message)
            }
        },
    )?;
    Ok(JobOutcome { report })
}

/// The report as the job starts: the core's skeleton (the one the
/// supervisor's failed reports start from), with this worker's libtorch
/// and the options' budget, and why its timings may not be trusted.
fn begin_report(
    opts: &JobSpec,
    bytes: &[u8],
    started: toml::value::Datetime,
    libtorch: String,
) -> Report {
    let mut report = report::skeleton(
        &opts.model,
        hex_sha256(bytes),
        bytes.len() as u64,
        started,
        opts.knobs.threads,
    );
    report.run.libtorch = libtorch;
    report.run.started_busy = opts.started_busy;
    let bench = opts.knobs.bench();
    report.run.max_seconds = bench.max_seconds;
    report.run.target_rel_ci = bench.target_rel_ci;
    if let Some(emulator) = &report.run.emulator {
        report
            .notes
            .push(precisiond_core::emulation::note(emulator));
    }
    if let Some(share) = opts.started_busy {
        report.notes.push(format!(
            "the machine was busy when this job started (other processes used {:.0}% of the CPUs \
             after the daemon's busy_wait_seconds ran out): timings may be contended; see each \
             result's quality",
            share * 100.0
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_and_the_supervisor_write_one_report_skeleton() {
        let knobs = precisiond_core::job::Knobs {
            threads: 3,
            max_seconds: 7.0,
            ..Default::default()
        };
        let opts = JobSpec::build(
            "/drop/model.pt".into(),
            knobs,
            precisiond_core::job::Given {
                started_busy: Some(0.5),
                ..Default::default()
            },
        )
        .unwrap();
        let started = report::now();
        let ours = begin_report(&opts, b"four", started, "2.13.0".into());
        let failed = report::failed_report_for(
            &opts.model,
            hex_sha256(b"four"),
            4,
            "boom".into(),
            started,
            opts.knobs.threads,
        );
        let value = |r: &Report| toml::Value::try_from(r).unwrap();
        let (ours_value, failed_value) = (value(&ours), value(&failed));
        assert_eq!(ours_value["model"], failed_value["model"]);
        assert_eq!((ours.status, ours.error), (Status::Ok, None));
        assert_eq!(ours.run.libtorch, "2.13.0");
        assert_eq!(ours.run.threads, 3);
        assert_eq!(ours.run.max_seconds, 7.0);
        assert_eq!(ours.run.started_busy, Some(0.5));
        assert!(ours.notes.iter().any(|n| n.contains("busy")));
        // The same keys, but what only one of them has to say.
        let keys = |v: &toml::Value| {
            let mut keys: Vec<String> = Vec::new();
            for table in [v, &v["run"], &v["model"]] {
                keys.extend(table.as_table().unwrap().keys().cloned());
            }
            keys.retain(|k| !["error", "started_busy", "notes"].contains(&k.as_str()));
            keys
        };
        assert_eq!(keys(&ours_value), keys(&failed_value));
    }
}
