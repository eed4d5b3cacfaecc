//! precisiond: finds out which number formats a machine really accelerates
//! and times a model in each of them. See README.md.
//!
//! This library never calls libtorch: the `precisiond` supervisor links it
//! and must not load libtorch (an idle daemon stays small, and a crash in
//! libtorch cannot take it down). Everything that runs models lives in the
//! `precisiond-worker` binary (the `worker/` crate).

pub mod accuracy;
pub mod aoti;
pub mod bench;
pub mod child;
pub mod cli;
pub mod conditions;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod emulation;
pub mod energy;
pub mod fsutil;
pub mod hardware;
pub mod hashcache;
pub mod memory;
pub mod output;
pub mod precision;
pub mod protocol;
pub mod queue;
pub mod regression;
pub mod report;
pub mod settings;
pub mod speedup;
pub mod state_files;
pub mod summarize;
pub mod supervise;
pub mod tensorrt;
pub mod watch;
