//! `precisiond summarize`: reads the reports a fleet copied back (any
//! folder layout), lines their results up per model, device and precision,
//! and picks the best precision per model and device under an accuracy
//! floor. `crate::summarize::format` writes what this gathers.
//!
//! Grouping keys:
//! - a model is its `model.sha256`, so renamed copies group together;
//! - a device is `run.host` + `hardware.cpu.model` + the result's device
//!   ("cpu", "cuda:0").
//!
//! Where two reports of the same model come from the same machine, only
//! the newest (`run.finished`) is shown; the other is listed as skipped.

pub mod format; // table, markdown, CSV, JSON and HTML of a summary

use precisiond_core::conditions::Quality;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{self, Report, SpeedupWithheld, Status};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name every report ends with.
pub const REPORT_SUFFIX: &str = ".report.toml";

/// The accuracy floor a precision must keep to to be picked as best.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// The worst output's cosine with FP32's must be at least this.
    pub min_cosine: f64,
    /// The worst output's SQNR (against FP32's outputs) must be at least
    /// this many dB, where the report has one.
    pub min_sqnr_db: f64,
}

impl Default for Floor {
    fn default() -> Self {
        Floor {
            min_cosine: 0.99,
            min_sqnr_db: 20.0,
        }
    }
}

/// A report read.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub report: Report,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

/// One result: model x device x precision (label).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The model's file name(s) over every report with its sha256.
    pub model: String,
    pub model_sha256: String,
    pub host: String,
    /// `hardware.cpu.model`; empty where the report has no hardware table.
    pub cpu_model: String,
    /// The result's device: "cpu", "cuda:0".
    pub device: Device,
    /// The CPU model for "cpu", the GPU's name for a CUDA device.
    pub device_name: String,
    /// `PrecisionResult::precision_label()`: "int8", "fp16 (tensorrt)".
    pub precision: String,
    pub status: Status,
    pub median_ms: Option<f64>,
    pub speedup_vs_fp32: Option<f64>,
    /// `accuracy.worst.cosine`.
    pub cosine: Option<f64>,
    pub sqnr_db: Option<f64>,
    pub native: bool,
    pub accelerated: Option<bool>,
    /// "clean", "contended", "throttled"; absent in older reports.
    pub quality: Option<Quality>,
    /// The precision is not native: its arithmetic ran in another format.
    pub emulated: bool,
    pub energy_mj_per_inference: Option<f64>,
    /// The best precision of its model and device (see [`Best`]).
    pub best: bool,
    /// The report the row comes from.
    pub report: String,
    /// The median of the report this one replaced (`[results.previous]`).
    pub previous_median_ms: Option<f64>,
    /// Slower than the previous run beyond its confidence interval
    /// (`precisiond_core::regression`); absent where there is no verdict.
    pub regression: Option<bool>,
    #[serde(skip)]
    pub(crate) precision_order: Precision,
    /// Why the report has no speedup for it (`results.speedup_withheld`);
    /// not a column: the CSV and JSON fields stay as scripts know them.
    #[serde(skip)]
    pub(crate) speedup_withheld: Option<SpeedupWithheld>,
}

/// The best precision of one model on one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Best {
    pub model: String,
    pub model_sha256: String,
    pub host: String,
    pub cpu_model: String,
    pub device: Device,
    pub device_name: String,
    pub precision: String,
    pub median_ms: f64,
    pub speedup_vs_fp32: Option<f64>,
    pub cosine: Option<f64>,
    pub sqnr_db: Option<f64>,
    pub emulated: bool,
    pub quality: Option<Quality>,
    /// Faster results that the floor (or their status) excluded, with why:
    /// "int8: cosine 0.950000 < 0.99".
    pub faster_excluded: Vec<String>,
    /// As [`Row`]'s: read by the notes, not a JSON field.
    #[serde(skip)]
    pub speedup_withheld: Option<SpeedupWithheld>,
}

/// Everything `summarize` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rows: Vec<Row>,
    pub best: Vec<Best>,
    pub skipped: Vec<Skipped>,
    /// How many reports were read.
    #[serde(skip)]
    pub reports_read: usize,
}

/// How rows are ordered and grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    #[default]
    Model,
    Device,
}

/// Reads every report under `paths` (files, or folders walked
/// recursively for `*.report.toml`): the reports read, and the files that
/// were not, with why. A file named on the command line is read whatever
/// its name.
pub fn collect(paths: &[PathBuf]) -> (Vec<Loaded>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut files, &mut skipped),
            Ok(_) => files.push(path.clone()),
            Err(e) => skipped.push(Skipped {
                path: path.display().to_string(),
                why: format!("cannot read: {e}"),
            }),
        }
    }
    let mut loaded = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        // The same file reached twice (two overlapping paths) counts once.
        let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if !seen.insert(key) {
            continue;
        }
        match read(&file) {
            Ok(report) => loaded.push(Loaded { path: file, report }),
            Err(why) => skipped.push(Skipped {
                path: file.display().to_string(),
                why,
            }),
        }
    }
    (loaded, skipped)
}

/// Collects `*.report.toml` under `dir`, in name order. Links to folders
/// are not followed (a link back up would never end); links to files are.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            skipped.push(Skipped {
                path: dir.display().to_string(),
                why: format!("cannot list folder: {e}"),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, files, skipped);
            continue;
        }
        let is_report = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(REPORT_SUFFIX) && n.len() > REPORT_SUFFIX.len());
        if is_report && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
}

/// One report, or why it cannot be used.
pub fn read(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    parse(&text)
}

/// A report's text, or why it is not one this precisiond can use: not
/// TOML, no `schema_version`, a newer schema, or fields missing that an
/// older schema did not have and that cannot default.
pub fn parse(text: &str) -> Result<Report, String> {
    let value: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    " (line {})",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        format!(
            "not TOML{line}: {}",
            e.message().lines().next().unwrap_or("parse error")
        )
    })?;
    let version = match value.get("schema_version") {
        Some(toml::Value::Integer(v)) => *v,
        Some(_) => return Err("schema_version is not a number".into()),
        None => return Err("not a precisiond report (no schema_version)".into()),
    };
    if version > i64::from(report::SCHEMA_VERSION) {
        return Err(format!(
            "schema_version {version} is newer than this precisiond reads ({}); upgrade precisiond to summarize it",
            report::SCHEMA_VERSION
        ));
    }
    // From the text again: a `toml::Value` would turn datetimes to strings.
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let what = if version < i64::from(report::SCHEMA_VERSION) {
            format!("older schema_version {version} lacks what a report needs")
        } else {
            "not a valid report".to_owned()
        };
        format!("{what}: {}", e.message().trim())
    })
}

/// The machine a report comes from.
fn machine(report: &Report) -> (String, String) {
    (
        report.run.host.clone(),
        report
            .hardware
            .as_ref()
            .map(|h| h.cpu.model.clone())
            .unwrap_or_default(),
    )
}

/// The newest report per model and machine; the others are skipped.
fn newest_only(loaded: Vec<Loaded>, skipped: &mut Vec<Skipped>) -> Vec<Loaded> {
    let mut by_key: BTreeMap<(String, String, String), Loaded> = BTreeMap::new();
    for l in loaded {
        let (host, cpu) = machine(&l.report);
        let key = (l.report.model.sha256.clone(), host, cpu);
        match by_key.remove(&key) {
            None => {
                by_key.insert(key, l);
            }
            Some(other) => {
                let newer_is_l =
                    l.report.run.finished.to_string() >= other.report.run.finished.to_string();
                let (keep, drop) = if newer_is_l { (l, other) } else { (other, l) };
                skipped.push(Skipped {
                    path: drop.path.display().to_string(),
                    why: format!(
                        "superseded by the newer report {} of the same model on the same machine",
                        keep.path.display()
                    ),
                });
                by_key.insert(key, keep);
            }
        }
    }
    by_key.into_values().collect()
}

/// The name shown for each model sha256: its file names, sorted, joined;
/// with a short sha where two models would read alike.
fn model_names(loaded: &[Loaded]) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in loaded {
        let names = files.entry(l.report.model.sha256.clone()).or_default();
        if !names.contains(&l.report.model.file) {
            names.push(l.report.model.file.clone());
        }
    }
    let mut shown: BTreeMap<String, String> = files
        .into_iter()
        .map(|(sha, mut names)| {
            names.sort();
            (sha, names.join(", "))
        })
        .collect();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for name in shown.values() {
        *count.entry(name.clone()).or_default() += 1;
    }
    for (sha, name) in shown.iter_mut() {
        if count[name.as_str()] > 1 {
            let short: String = sha.chars().take(12).collect();
            *name = format!("{name} (sha256 {short})");
        }
    }
    shown
}

/// Lines up the reports' results and picks the best per model and device.
pub fn summarize(
    loaded: Vec<Loaded>,
    mut skipped: Vec<Skipped>,
    floor: Floor,
    by: GroupBy,
) -> Summary {
    let reports_read = loaded.len();
    let loaded = newest_only(loaded, &mut skipped);
    let names = model_names(&loaded);
    let mut rows = Vec::new();
    for l in &loaded {
        let r = &l.report;
        let (host, cpu_model) = machine(r);
        for res in &r.results {
            let device_name = match res.device {
                Device::Cpu => cpu_model.clone(),
                Device::Cuda(_) => r
                    .hardware
                    .as_ref()
                    .and_then(|h| h.gpu(res.device))
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
            };
            let worst = res.accuracy.as_ref().map(|a| &a.worst);
            rows.push(Row {
                model: names[&r.model.sha256].clone(),
                model_sha256: r.model.sha256.clone(),
                host: host.clone(),
                cpu_model: cpu_model.clone(),
                device: res.device,
                device_name,
                precision: res.precision_label(),
                status: res.status,
                median_ms: res.latency_ms.as_ref().map(|l| l.median),
                speedup_vs_fp32: res.speedup_vs_fp32,
                cosine: worst.and_then(|w| w.cosine),
                sqnr_db: worst.and_then(|w| w.sqnr_db),
                native: res.native,
                accelerated: res.accelerated,
                quality: res.quality,
                emulated: res.status == Status::Ok
                    && !res.native
                    && res.precision != Precision::Fp32,
                energy_mj_per_inference: res
                    .energy
                    .as_ref()
                    .and_then(|e| e.energy_mj_per_inference),
                best: false,
                report: l.path.display().to_string(),
                previous_median_ms: res.previous.as_ref().map(|p| p.median_ms),
                regression: res.regression,
                precision_order: res.precision,
                speedup_withheld: res.speedup_withheld,
            });
        }
    }
    sort_rows(&mut rows, by);
    let best = pick_best(&mut rows, floor);
    Summary {
        rows,
        best,
        skipped,
        reports_read,
    }
}

fn device_key(r: &Row) -> (&str, &str, Device) {
    (&r.host, &r.cpu_model, r.device)
}

fn model_key(r: &Row) -> (&str, &str) {
    (&r.model, &r.model_sha256)
}

fn sort_rows(rows: &mut [Row], by: GroupBy) {
    rows.sort_by(|a, b| {
        let first = match by {
            GroupBy::Model => model_key(a)
                .cmp(&model_key(b))
                .then_with(|| device_key(a).cmp(&device_key(b))),
            GroupBy::Device => device_key(a)
                .cmp(&device_key(b))
                .then_with(|| model_key(a).cmp(&model_key(b))),
        };
        first
            .then(a.precision_order.cmp(&b.precision_order))
            .then_with(|| a.precision.cmp(&b.precision))
    });
}

/// Why `row` cannot be best under `floor`, or None when it can.
pub fn excluded_by(row: &Row, floor: Floor) -> Option<String> {
    if row.status != Status::Ok {
        return Some(format!("status {}", row.status.word()));
    }
    if row.median_ms.is_none() {
        return Some("no median".into());
    }
    if row.precision_order == Precision::Fp32 {
        return None;
    }
    match row.cosine {
        None => return Some("no cosine against FP32".into()),
        Some(c) if c.is_nan() || c < floor.min_cosine => {
            return Some(format!("cosine {c:.6} < {}", floor.min_cosine))
        }
        Some(_) => {}
    }
    match row.sqnr_db {
        Some(s) if s.is_nan() || s < floor.min_sqnr_db => {
            Some(format!("sqnr {s:.1} dB < {} dB", floor.min_sqnr_db))
        }
        _ => None,
    }
}

/// Marks each model-and-device group's best row and lists them, in the
/// rows' order.
fn pick_best(rows: &mut [Row], floor: Floor) -> Vec<Best> {
    // Model sha256, host, CPU model, device; the rows of each.
    type Key = (String, String, String, Device);
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (
            r.model_sha256.clone(),
            r.host.clone(),
            r.cpu_model.clone(),
            r.device,
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut best = Vec::new();
    for (_, members) in groups {
        let winner = members
            .iter()
            .copied()
            .filter(|&i| excluded_by(&rows[i], floor).is_none())
            .min_by(|&a, &b| {
                rows[a]
                    .median_ms
                    .partial_cmp(&rows[b].median_ms)
                    .unwrap_or(Ordering::Equal)
            });
        let Some(w) = winner else { continue };
        rows[w].best = true;
        let r = &rows[w];
        let median = r.median_ms.unwrap_or(f64::NAN);
        let faster_excluded = members
            .iter()
            .filter(|&&i| i != w)
            .filter(|&&i| rows[i].median_ms.is_some_and(|m| m < median))
            .filter_map(|&i| {
                excluded_by(&rows[i], floor).map(|why| format!("{}: {why}", rows[i].precision))
            })
            .collect();
        best.push(Best {
            model: r.model.clone(),
            model_sha256: r.model_sha256.clone(),
            host: r.host.clone(),
            cpu_model: r.cpu_model.clone(),
            device: r.device,
            device_name: r.device_name.clone(),
            precision: r.precision.clone(),
            median_ms: median,
            speedup_vs_fp32: r.speedup_vs_fp32,
            cosine: r.cosine,
            sqnr_db: r.sqnr_db,
            emulated: r.emulated,
            quality: r.quality,
            faster_excluded,
            speedup_withheld: r.speedup_withheld,
        });
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_current_report() {
        assert!(parse("not = [toml").unwrap_err().starts_with("not TOML"));
        assert!(parse("a = 1").unwrap_err().contains("no schema_version"));
        let future = parse("schema_version = 99").unwrap_err();
        assert!(future.contains("newer"), "{future}");
        let old = parse("schema_version = 0").unwrap_err();
        assert!(old.contains("older schema_version 0"), "{old}");
    }

    #[test]
    fn rows_carry_the_typed_device_status_and_quality() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reports/fleet/jetson1/models/mlp_v2.pt.report.toml");
        let mut report = read(&path).unwrap();
        let gpu_fp16 = report
            .results
            .iter_mut()
            .find(|r| r.device == Device::Cuda(0) && r.precision == Precision::Fp16)
            .unwrap();
        gpu_fp16.speedup_withheld = Some(SpeedupWithheld::Fp32Unclean);
        let loaded = vec![Loaded { path, report }];
        let summary = summarize(loaded, Vec::new(), Floor::default(), GroupBy::Model);
        let gpu: Vec<&Row> = summary
            .rows
            .iter()
            .filter(|r| r.device == Device::Cuda(0))
            .collect();
        assert!(!gpu.is_empty());
        // `[hardware.cuda0]` names the GPU of the results on "cuda:0".
        assert!(gpu.iter().all(|r| r.device_name == "Orin"), "{gpu:?}");
        let cpu_rows = summary.rows.iter().filter(|r| r.device == Device::Cpu);
        assert!(cpu_rows
            .clone()
            .any(|r| r.quality == Some(Quality::Contended)));
        assert!(cpu_rows.clone().all(|r| r.device_name == r.cpu_model));
        assert!(summary
            .rows
            .iter()
            .all(|r| r.status == Status::Ok || excluded_by(r, Floor::default()).is_some()));
        let fp16 = gpu.iter().find(|r| r.precision == "fp16").unwrap();
        assert_eq!(fp16.speedup_withheld, Some(SpeedupWithheld::Fp32Unclean));
        let best = summary
            .best
            .iter()
            .find(|b| b.device == Device::Cuda(0))
            .unwrap();
        assert_eq!(best.precision, "fp16");
        assert_eq!(best.speedup_withheld, Some(SpeedupWithheld::Fp32Unclean));
        // The CPU sorts before the GPU, as "cpu" did before "cuda:0".
        let first_gpu = summary.rows.iter().position(|r| r.device != Device::Cpu);
        let last_cpu = summary.rows.iter().rposition(|r| r.device == Device::Cpu);
        assert!(last_cpu < first_gpu);
    }
}
