//! `precisiond`: the supervisor. It never loads libtorch; measuring happens
//! in `precisiond-worker` child processes.

use clap::{Parser, Subcommand};
use precisiond::cli::{fail, SummarizeArgs, SummaryBy, SummaryFormat};
use precisiond::daemon::{self, WatchArgs};
use precisiond::supervise::{self, WorkerEnd};
use precisiond_core::flags::{self, DetectArgs, RunArgs};
use precisiond_core::output;
use precisiond_core::protocol::WorkerLine;
use precisiond_core::report;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
#[command(
    name = "precisiond",
    version,
    about = "Times a model in FP32, FP16, BF16 and INT8 and reports which precision this machine really accelerates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one model now and write its report (the daemon's one-shot path).
    // Boxed: its flags outweigh the other commands' (clippy's large_enum_variant).
    Run(Box<RunArgs>),
    /// Show which precisions each device of this machine has arithmetic for.
    Detect(DetectArgs),
    /// Watch drop folders and measure every model copied into them (the daemon).
    Watch(WatchArgs),
    /// Line up the reports copied back from many machines: one row per
    /// model, device and precision, and the best precision per device.
    Summarize(SummarizeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon sets up its own logging: its level comes from its config
    // and changes on reload.
    if !matches!(cli.command, Command::Watch(_)) {
        env_logger::Builder::from_env(env_logger::Env::new().filter_or("PRECISIOND_LOG", "warn"))
            .init();
    }
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Detect(args) => detect(args),
        Command::Watch(args) => daemon::run(args),
        Command::Summarize(args) => summarize(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let spec = match args.spec() {
        Ok(spec) => spec,
        Err(e) => return fail(e),
    };
    // A missing model gets no report: there is nothing to write it beside.
    match std::fs::metadata(&spec.model) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return fail(format!("{} is not a regular file", spec.model.display())),
        Err(e) => return fail(format!("cannot read model {}: {e}", spec.model.display())),
    }
    let worker = match supervise::worker_exe() {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let stop = AtomicBool::new(false);
    let measured = supervise::measure(&worker, &spec, 1, &stop, |progress| {
        log::info!("measuring {progress}");
    });
    let report = match measured {
        Ok(m) => match m.report {
            Some(report) => report,
            // The worker printed why; no report was written.
            None => return ExitCode::FAILURE,
        },
        Err(e) => return fail(e),
    };
    print!("{}", output::table::report_summary(&report));
    println!("report: {}", spec.report.display());
    match report.status {
        report::Status::Ok => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn detect(args: DetectArgs) -> ExitCode {
    let worker = match supervise::worker_exe() {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let input = toml::to_string(&args).expect("detect's arguments serialise");
    let stop = AtomicBool::new(false);
    // `detect` prints text for people, no messages.
    let shown = |line| match line {
        WorkerLine::Text(text) => println!("{text}"),
        other => log::warn!("unexpected from the worker's detect: {other:?}"),
    };
    // The worker's exit code is precisiond's.
    match supervise::run_worker(
        &worker,
        &flags::worker_detect_args(),
        &input,
        None,
        &stop,
        shown,
    ) {
        Ok(WorkerEnd::Exited(exit)) => exit.into(),
        Ok(WorkerEnd::ExitedWith(code)) => ExitCode::from(code as u8),
        Ok(end) => fail(end.describe()),
        Err(e) => fail(format!("cannot start the worker {}: {e}", worker.display())),
    }
}

fn summarize(args: SummarizeArgs) -> ExitCode {
    use precisiond::summarize::{self, GroupBy};
    let floor = match args.floor() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let paths = args.paths();
    let (loaded, skipped) = summarize::collect(&paths);
    let by = match args.by {
        SummaryBy::Model => GroupBy::Model,
        SummaryBy::Device => GroupBy::Device,
    };
    // The page's charts: every report read and used (not superseded).
    let charted = (args.format == SummaryFormat::Html).then(|| loaded.clone());
    let summary = summarize::summarize(loaded, skipped, floor, by);
    for s in &summary.skipped {
        eprintln!("precisiond: skipped {}: {}", s.path, s.why);
    }
    if summary.reports_read == 0 {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return fail(format!(
            "no readable precisiond report (*.report.toml) in {}",
            shown.join(", ")
        ));
    }
    let text = match args.format {
        SummaryFormat::Table => precisiond::summarize::format::table(&summary, floor),
        SummaryFormat::Markdown => precisiond::summarize::format::markdown(&summary, floor),
        SummaryFormat::Csv => precisiond::summarize::format::csv(&summary),
        SummaryFormat::Json => precisiond::summarize::format::json(&summary),
        SummaryFormat::Html => {
            let unused: Vec<&str> = summary.skipped.iter().map(|s| s.path.as_str()).collect();
            let charts: Vec<(String, String)> = charted
                .unwrap_or_default()
                .iter()
                .filter(|l| !unused.contains(&l.path.display().to_string().as_str()))
                .filter_map(|l| {
                    let svg = output::svg::report_svg(&l.report)
                        .map_err(|e| {
                            eprintln!("precisiond: no chart for {}: {e}", l.path.display())
                        })
                        .ok()?;
                    Some((
                        format!("{} on {}", l.report.model.file, l.report.run.host),
                        svg,
                    ))
                })
                .collect();
            precisiond::summarize::format::html(&summary, floor, &charts)
        }
    };
    match &args.out {
        None => print!("{text}"),
        Some(path) => {
            if let Err(e) = precisiond_core::fsutil::write_atomic(path, text.as_bytes()) {
                return fail(format!("cannot write {}: {e}", path.display()));
            }
        }
    }
    ExitCode::SUCCESS
}
