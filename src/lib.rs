//! precisiond: the supervisor's library, behind the `precisiond` binary
//! (CLI and daemon). What it shares with the worker (the report, the job
//! spec, the protocol, the hardware rules, ...) is the `precisiond-core`
//! crate; the worker (`worker/`, the only crate that links libtorch) depends
//! on that crate and not on this one, so daemon code cannot reach it.
//! docs/architecture.md follows a model through the three crates and maps
//! every module.

pub mod cli; // `precisiond`'s command line
pub mod config; // the daemon's config file
pub mod daemon; // watching folders, the job queue, retries, systemd
pub mod summarize; // `precisiond summarize`: fleets of reports
pub mod supervise; // running one job in a `precisiond-worker` child
