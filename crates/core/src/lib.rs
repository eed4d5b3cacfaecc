//! precisiond-core: what both of precisiond's processes share. The
//! report's vocabulary and model, the job a worker is given, the messages
//! between the processes, the statistics, accuracy and hardware rules, the
//! energy readers, and the report's own output formats.
//!
//! This crate never calls libtorch, and it knows nothing of the daemon:
//! the `precisiond` package (CLI, daemon) and the `precisiond-worker` crate
//! (the only one that links libtorch) both depend on it, and neither can be
//! reached from here. See docs/architecture.md for the module map.

pub mod accuracy;
pub mod aoti;
pub mod bench;
pub mod child;
pub mod conditions;
pub mod devices;
pub mod emulation;
pub mod energy;
pub mod flags;
pub mod fsutil;
pub mod hardware;
pub mod job;
pub mod memory;
pub mod output;
pub mod path_bytes;
pub mod precision;
pub mod protocol;
pub mod regression;
pub mod report;
pub mod settings;
pub mod speedup;
pub mod state_files;
pub mod tensorrt;

/// How a unit test says this machine let it check nothing, or less:
/// shared with the integration tests.
#[cfg(test)]
#[path = "../../../tests/common/skip.rs"]
mod skip;
