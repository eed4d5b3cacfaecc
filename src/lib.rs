//! precisiond: finds out which number formats a machine really accelerates
//! and times a model in each of them. See README.md.

pub mod accuracy;
pub mod bench;
pub mod cli;
pub mod facts;
pub mod hardware;
pub mod model;
pub mod precision;
pub mod quantize;
pub mod report;
pub mod settings;
pub mod shim;
pub mod supervise;
pub mod worker;
