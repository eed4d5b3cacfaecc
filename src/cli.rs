//! `precisiond`'s own command-line arguments; the flags it shares with
//! `precisiond-worker` are in `precisiond_core::flags`.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Prints an error the way `precisiond` prints every error that ends it,
/// and returns the exit code that goes with it.
pub fn fail(message: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("precisiond: error: {message}");
    std::process::ExitCode::FAILURE
}

/// `precisiond summarize`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// Aligned columns, then the best precision per model and device.
    Table,
    /// A GitHub table (numbers right-aligned), then the best per device.
    Markdown,
    /// One row per result with a `best` column; header of snake_case names.
    Csv,
    /// {"rows": [...], "best": [...], "skipped": [...]}.
    Json,
    /// One static page: the table, the best per device, every report's chart.
    Html,
}

/// How `precisiond summarize` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryBy {
    /// Model, then host and device, then precision.
    Model,
    /// Host and device, then model, then precision.
    Device,
}

#[derive(Debug, Clone, Args)]
pub struct SummarizeArgs {
    /// Reports, or folders searched recursively for *.report.toml [default: .].
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: SummaryFormat,
    /// Write the output to FILE (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Order and group rows by model or by device.
    #[arg(long, value_enum, default_value = "model")]
    pub by: SummaryBy,
    /// Best precision: the worst output's cosine with FP32's must be at
    /// least this (FP32 always qualifies).
    #[arg(long, default_value_t = crate::summarize::Floor::default().min_cosine)]
    pub min_cosine: f64,
    /// Best precision: the worst output's SQNR against FP32's outputs must
    /// be at least this many dB, where the report has one.
    #[arg(long, default_value_t = crate::summarize::Floor::default().min_sqnr_db)]
    pub min_sqnr_db: f64,
}

impl SummarizeArgs {
    /// The accuracy floor the flags give, checked.
    pub fn floor(&self) -> Result<crate::summarize::Floor, String> {
        if !(-1.0..=1.0).contains(&self.min_cosine) {
            return Err(format!(
                "--min-cosine must be between -1 and 1, got {}",
                self.min_cosine
            ));
        }
        if self.min_sqnr_db.is_nan() {
            return Err("--min-sqnr-db must be a number".into());
        }
        Ok(crate::summarize::Floor {
            min_cosine: self.min_cosine,
            min_sqnr_db: self.min_sqnr_db,
        })
    }

    /// The paths to read: those given, else the current folder.
    pub fn paths(&self) -> Vec<PathBuf> {
        if self.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            self.paths.clone()
        }
    }
}
