//! `precisiond-worker`: the process that loads libtorch and measures one
//! model (or probes the hardware). Started by `precisiond`; usable by hand.

mod calibration;
mod compare;
mod context;
mod cuda;
mod energy;
mod family;
mod forward;
mod inputs;
mod job;
mod libs;
mod measure;
mod method;
mod model;
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

use clap::{Args, Parser, Subcommand};
use precisiond_core::flags::{DetectArgs, OutputFormat, RunArgs};
use precisiond_core::hardware::{self, DetectOptions};
use precisiond_core::job::JobSpec;
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
    Run(Box<RunCommand>),
    /// Print the hardware detection.
    Detect(DetectCommand),
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

/// `run MODEL`: with `--job FILE` ("-": standard input) the job spec the
/// supervisor wrote (`precisiond_core::flags::worker_run_args`), else the
/// flags of `precisiond run`, made a spec by the same function.
#[derive(Args)]
struct RunCommand {
    /// The model (the job spec names it too: they must agree) and the flags.
    #[command(flatten)]
    run: RunArgs,
    /// Read the job spec from FILE ("-": standard input) instead of flags.
    #[arg(long, hide = true, value_name = "FILE", conflicts_with = "JobFlags")]
    job: Option<std::path::PathBuf>,
}

/// `detect`: its flags, or `--job FILE` with them as TOML.
#[derive(Args)]
struct DetectCommand {
    #[command(flatten)]
    args: DetectArgs,
    /// Read the arguments from FILE ("-": standard input) instead of flags.
    #[arg(long, hide = true, value_name = "FILE", conflicts_with = "DetectArgs")]
    job: Option<std::path::PathBuf>,
}

/// What `--job` names: a file, or standard input for "-".
fn read_handed(path: &std::path::Path) -> std::io::Result<String> {
    if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}

fn fail(message: impl std::fmt::Display) -> WorkerExit {
    eprintln!("precisiond-worker: error: {message}");
    WorkerExit::Error
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
        Command::Run(command) => match job_spec(&command) {
            Ok(spec) => run(&spec, &cuda::load_libtorch_cuda()),
            Err(exit) => exit,
        },
        Command::Detect(command) => match detect_args(command) {
            Ok(args) => detect(args, &cuda::load_libtorch_cuda()),
            Err(exit) => exit,
        },
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

/// The job: the spec handed over, or the one the flags make. Err: how
/// the worker ends, the reason printed.
fn job_spec(command: &RunCommand) -> Result<JobSpec, WorkerExit> {
    let Some(path) = &command.job else {
        return command.run.spec().map_err(fail);
    };
    let text = read_handed(path)
        .map_err(|e| fail(format!("cannot read the job spec {}: {e}", path.display())))?;
    let spec = JobSpec::parse(&text).map_err(fail)?;
    if spec.model != command.run.model {
        return Err(fail(format!(
            "the job spec is for {}, not {}",
            spec.model.display(),
            command.run.model.display()
        )));
    }
    Ok(spec)
}

fn detect_args(command: DetectCommand) -> Result<DetectArgs, WorkerExit> {
    let Some(path) = &command.job else {
        return Ok(command.args);
    };
    let text =
        read_handed(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| fail(format!("detect's arguments: {e}")))
}

fn run(opts: &JobSpec, cuda_load: &cuda::CudaLoad) -> WorkerExit {
    match job::run_job(opts, cuda_load) {
        Ok(outcome) if outcome.report.status == Status::Ok => WorkerExit::Ok,
        Ok(outcome) => {
            if let Some(error) = &outcome.report.error {
                eprintln!("precisiond-worker: {}: {error}", opts.model.display());
            }
            WorkerExit::ReportedFailure
        }
        Err(job::JobError::Refused(e)) => fail(e),
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
        Err(e) => fail(format!("{e:#}")),
    }
}
