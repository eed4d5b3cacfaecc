//! What precisiond writes for people and scripts to read, one file per
//! destination, so that a change to one format never touches another.

pub mod prometheus; // the daemon's node_exporter textfile (`textfile_dir`)
pub mod status; // the daemon's `.precisiond/status.toml` and systemd's STATUS= line
pub mod table; // the terminal tables of `precisiond run` and `precisiond detect`
pub mod toml; // the TOML report written beside each model
