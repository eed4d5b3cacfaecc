//! What precisiond writes for people and scripts to read, one file per
//! destination, so that a change to one format never touches another.

pub mod status; // the daemon's `.precisiond/status.toml` and systemd's STATUS= line
pub mod summary; // `precisiond summarize`: table, markdown, CSV, JSON
pub mod table; // the terminal tables of `precisiond run` and `precisiond detect`
pub mod toml; // the TOML report written beside each model
