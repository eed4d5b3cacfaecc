//! `precisiond-worker`: the process that loads libtorch and measures one
//! model (or probes the hardware). Started by `precisiond`; usable by hand.

mod calibration;
mod compare;
mod context;
mod cuda;
mod energy;
mod family;
mod forward;
mod job;
mod libs;
mod measure;
mod method;
mod model;
mod path_bytes;
mod plan;
mod probe;
mod profile;
mod qengine;
mod quantize;
mod shim;
mod supervisor;
mod timing;
mod verdict;

/// How a unit test says this machine let it check nothing, or less:
/// shared with the integration tests.
#[cfg(test)]
#[path = "../../tests/common/skip.rs"]
mod skip;

use clap::{Parser, Subcommand};
use context::JobOptions;
use precisiond_core::flags::{DetectArgs, OutputFormat, RunArgs};
use precisiond_core::hardware::{self, DetectOptions};
use precisiond_core::protocol::WorkerBuild;
use precisiond_core::protocol::WorkerExit;
use precisiond_core::report::Status;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "precisiond-worker",
    version,
    about = "precisiond's measuring process (loads libtorch)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Measure one model and write its report. (Boxed: the arguments are
    /// far larger than the other commands'.)
    Run(Box<RunArgs>),
    /// Print the hardware detection.
    Detect(DetectArgs),
    /// Quantize the model on stdin as a job file describes (started by
    /// `run`, in a process of its own so a crash in libtorch's passes stays
    /// contained; the job names the sha256 the model's bytes must have).
    #[command(hide = true)]
    Quantize { job: std::path::PathBuf },
    /// Print what this worker was built against, as TOML (the supervisor
    /// and the tests read it; they link no libtorch).
    #[command(hide = true)]
    BuildInfo,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("PRECISIOND_LOG", "warn"))
        .init();
    // tch reports some libtorch errors by panicking; those are caught and
    // turned into failed results, so the default hook's message and
    // backtrace would only confuse. Keep it in the debug log.
    std::panic::set_hook(Box::new(|info| log::debug!("caught panic: {info}")));
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Run(args) => run(*args, &cuda::load_libtorch_cuda()),
        Command::Detect(args) => detect(args, &cuda::load_libtorch_cuda()),
        Command::BuildInfo => {
            let build = WorkerBuild {
                libtorch: shim::libtorch_version(),
                libtorch_cuda: cfg!(precisiond_libtorch_cuda),
            };
            print!("{}", toml::to_string(&build).expect("serialises"));
            WorkerExit::Ok
        }
        Command::Quantize { job } => {
            let done = quantize::quantize_main(&job);
            print!("{}", toml::to_string(&done).expect("serialises"));
            if done.error.is_some() {
                WorkerExit::Error
            } else {
                WorkerExit::Ok
            }
        }
    };
    exit.into()
}

fn run(args: RunArgs, cuda_load: &cuda::CudaLoad) -> WorkerExit {
    let checked = args
        .bench_config()
        .and_then(|b| Ok((b, args.accuracy_thresholds()?, args.limits()?)));
    let (bench, accuracy, limits) = match checked {
        Ok(all) => all,
        Err(e) => {
            eprintln!("precisiond-worker: error: {e}");
            return WorkerExit::Error;
        }
    };
    let opts = JobOptions {
        model: args.model.clone(),
        report: args.report_path(),
        precisions: args.precisions.clone().map(|l| l.0),
        threads: args.threads(),
        settings: args.settings.clone(),
        bench,
        state_dir: args.state_dir.clone(),
        probe: !args.no_probe,
        devices: args.devices.clone().map(|l| l.0),
        trtexec: args.trtexec.clone(),
        untrusted_folder: args.no_follow_symlinks,
        build_timeout: std::time::Duration::from_secs_f64(args.build_timeout),
        profile: args.profile,
        chart: !args.no_chart,
        accuracy,
        limits,
        started_busy: args.started_busy,
    };
    match job::run_job(&opts, cuda_load) {
        Ok(outcome) if outcome.report.status == Status::Ok => WorkerExit::Ok,
        Ok(outcome) => {
            if let Some(error) = &outcome.report.error {
                eprintln!("precisiond-worker: {}: {error}", args.model.display());
            }
            WorkerExit::ReportedFailure
        }
        Err(job::JobError::Refused(e)) => {
            eprintln!("precisiond-worker: error: {e}");
            WorkerExit::Error
        }
        Err(job::JobError::DiskFull(e)) => {
            eprintln!("precisiond-worker: error: {e}");
            WorkerExit::DiskFull
        }
    }
}

fn detect(args: DetectArgs, cuda_load: &cuda::CudaLoad) -> WorkerExit {
    let opts = DetectOptions {
        cpuinfo: args.cpuinfo.clone(),
        // detect() itself skips the probe for a --cpuinfo capture, and says so.
        probe: !args.no_probe,
        threads: None,
    };
    match hardware::detect(&opts, &probe::LinkedLibtorch) {
        Ok(mut hw) => {
            hw.notes.push(cuda::libraries_note(cuda_load));
            if let Some(emulator) = precisiond_core::emulation::emulator() {
                hw.notes.push(precisiond_core::emulation::note(&emulator));
            }
            match args.format {
                OutputFormat::Text => print!("{}", precisiond_core::output::table::hardware(&hw)),
                OutputFormat::Toml => {
                    print!("{}", toml::to_string(&hw).expect("hardware serialises"))
                }
            }
            WorkerExit::Ok
        }
        Err(e) => {
            eprintln!("precisiond-worker: error: {e:#}");
            WorkerExit::Error
        }
    }
}
