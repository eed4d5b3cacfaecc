//! The daemon's metrics for Prometheus, as a node_exporter textfile
//! (`textfile_dir` in the config): `precisiond.prom`, in the text
//! exposition format 0.0.4, without timestamps (node_exporter refuses
//! them). Written atomically through a temporary file whose name does not
//! end in `.prom`, so the textfile collector never reads half of one.
//!
//! Labels stay few and bounded: `model` is the model's file name (not its
//! path), `device`, `precision`, and `runtime` ("native" for the model's own
//! results, "torchscript" for the TorchScript model measured beside an
//! AOTInductor family).

use precisiond_core::report::{PrecisionResult, Report, Status};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

/// The file node_exporter's textfile collector reads.
pub const FILE_NAME: &str = "precisiond.prom";

/// What the daemon knows besides the reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonFacts {
    /// Models waiting to be measured.
    pub queue_length: usize,
    /// Worker failures (a crash, a timeout: the failed reports the
    /// supervisor writes itself) since the daemon started.
    pub failures_total: u64,
    /// A worker is measuring a model now.
    pub measuring: bool,
}

/// One metric family: its samples, each a suffix of the name (a
/// summary's `_sum` and `_count`), a label set and a value.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(&'static str, String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn push(&mut self, labels: String, value: f64) {
        self.samples.push(("", labels, value));
    }

    fn push_suffixed(&mut self, suffix: &'static str, labels: String, value: f64) {
        self.samples.push((suffix, labels, value));
    }
}

/// The text exposition of `reports` (each with its model's file name) and
/// of `daemon`. A (model, device, precision, runtime) met twice (two drop
/// folders holding models of the same name) is exported once, from the
/// first report: node_exporter refuses a file with a duplicate series.
pub fn exposition(reports: &[(String, Report)], daemon: &DaemonFacts) -> String {
    // A summary, not a gauge: promtool refuses a `quantile` label on any
    // other type. Its _sum and _count are those of the timed calls.
    let mut latency = Family::new(
        "precisiond_latency_seconds",
        "summary",
        "Latency of one forward() call over the timed calls, seconds.",
    );
    let mut speedup = Family::new(
        "precisiond_speedup_ratio",
        "gauge",
        "Median latency in FP32 over median latency in this precision on the same device.",
    );
    let mut cosine = Family::new(
        "precisiond_accuracy_cosine",
        "gauge",
        "Worst output's cosine similarity with FP32's outputs.",
    );
    let mut energy = Family::new(
        "precisiond_energy_joules_per_inference",
        "gauge",
        "Energy per inference over the timed calls, joules, where a sensor was readable.",
    );
    let mut emulated = Family::new(
        "precisiond_emulated",
        "gauge",
        "1 when the timing is not the hardware's own arithmetic: the precision has none \
         (converted to a wider format) or the run was under an emulator.",
    );
    let mut accelerated = Family::new(
        "precisiond_accelerated",
        "gauge",
        "1 when this precision is really faster for this model (the report's `accelerated`).",
    );
    let mut regression = Family::new(
        "precisiond_regression",
        "gauge",
        "1 when the median is above the previous run's 95% confidence interval (the model \
         was measured again and got slower), 0 when it is not; absent without a verdict.",
    );
    let mut result_ok = Family::new(
        "precisiond_result_ok",
        "gauge",
        "1 when this device and precision were measured, 0 when unsupported, failed or skipped.",
    );
    let mut report_count = Family::new(
        "precisiond_reports",
        "gauge",
        "Reports in the drop folders, by status.",
    );
    let mut failures = Family::new(
        "precisiond_failures_total",
        "counter",
        "Workers that crashed or ran past their time limit since the daemon started.",
    );
    let mut queue = Family::new(
        "precisiond_queue_length",
        "gauge",
        "Models waiting to be measured.",
    );
    let mut measuring = Family::new(
        "precisiond_measuring",
        "gauge",
        "1 while a worker measures a model.",
    );
    let mut build = Family::new(
        "precisiond_build_info",
        "gauge",
        "Always 1; the version of precisiond as a label.",
    );

    let (mut ok, mut failed) = (0usize, 0usize);
    let mut seen = HashSet::new();
    for (model, report) in reports {
        if report.status == Status::Ok {
            ok += 1;
        } else {
            failed += 1;
        }
        let under_emulator = report.run.emulator.is_some();
        for r in &report.results {
            let labels = result_labels(model, r);
            if !seen.insert(labels.clone()) {
                continue;
            }
            result_ok.push(labels.clone(), flag(r.status == Status::Ok));
            emulated.push(labels.clone(), flag(!r.native || under_emulator));
            if let Some(a) = r.accelerated {
                accelerated.push(labels.clone(), flag(a));
            }
            if let Some(slower) = r.regression {
                regression.push(labels.clone(), flag(slower));
            }
            if let Some(l) = r.latency_ms.as_ref().filter(|l| l.iterations > 0) {
                for (q, ms) in [("0.5", l.median), ("0.9", l.p90), ("0.99", l.p99)] {
                    let with_q = format!("{labels},quantile=\"{q}\"");
                    latency.push(with_q, ms / 1000.0);
                }
                let calls = l.iterations as f64;
                latency.push_suffixed("_sum", labels.clone(), l.mean * calls / 1000.0);
                latency.push_suffixed("_count", labels.clone(), calls);
            }
            if let Some(s) = r.speedup_vs_fp32 {
                speedup.push(labels.clone(), s);
            }
            if let Some(c) = r.accuracy.as_ref().and_then(|a| a.worst.cosine) {
                cosine.push(labels.clone(), c);
            }
            if let Some(mj) = r.energy.as_ref().and_then(|e| e.energy_mj_per_inference) {
                energy.push(labels.clone(), mj / 1000.0);
            }
        }
    }
    report_count.push("status=\"ok\"".into(), ok as f64);
    report_count.push("status=\"failed\"".into(), failed as f64);
    failures.push(String::new(), daemon.failures_total as f64);
    queue.push(String::new(), daemon.queue_length as f64);
    measuring.push(String::new(), flag(daemon.measuring));
    build.push(
        format!("version=\"{}\"", escape_label(env!("CARGO_PKG_VERSION"))),
        1.0,
    );

    let mut out = String::new();
    for family in [
        latency,
        speedup,
        cosine,
        energy,
        emulated,
        accelerated,
        regression,
        result_ok,
        report_count,
        failures,
        queue,
        measuring,
        build,
    ] {
        write_family(&mut out, &family);
    }
    out
}

/// `model="...",device="...",precision="...",runtime="...",method="..."`:
/// the method tells apart the results of one precision measured more than
/// one way (cast and autocast, libtorch and TensorRT), so a failed cast
/// does not hide the autocast result that worked.
fn result_labels(model: &str, r: &PrecisionResult) -> String {
    format!(
        "model=\"{}\",device=\"{}\",precision=\"{}\",runtime=\"{}\",method=\"{}\"",
        escape_label(model),
        escape_label(&r.device.to_string()),
        escape_label(r.precision.name()),
        escape_label(r.runtime.map_or("native", |r| r.word())),
        r.method.word(),
    )
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// HELP and TYPE once, then every sample of the family. A family without
/// samples is left out (promtool calls a lone HELP line an error).
fn write_family(out: &mut String, family: &Family) {
    if family.samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
    for (suffix, labels, value) in &family.samples {
        let name = family.name;
        if labels.is_empty() {
            let _ = writeln!(out, "{name}{suffix} {}", number(*value));
        } else {
            let _ = writeln!(out, "{name}{suffix}{{{labels}}} {}", number(*value));
        }
    }
}

/// A sample value as the format spells it: Go's float syntax, with NaN,
/// +Inf and -Inf for the values that are not finite.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form, never an exponent: "0.000206", "12".
        format!("{v}")
    }
}

/// A label value: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Writes `text` to `dir/precisiond.prom` through a temporary file in the
/// same folder (`.precisiond.prom.XXXXXX.tmp`: node_exporter reads only
/// names ending in `.prom`) and a rename.
pub fn write_textfile(dir: &Path, text: &str) -> std::io::Result<()> {
    precisiond_core::fsutil::write_atomic(&dir.join(FILE_NAME), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain.pt"), "plain.pt");
    }

    #[test]
    fn numbers_follow_the_format() {
        assert_eq!(number(0.000206), "0.000206");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(1e-9), "0.000000001");
    }

    #[test]
    fn no_reports_still_gives_the_daemon_families() {
        let text = exposition(
            &[],
            &DaemonFacts {
                queue_length: 3,
                failures_total: 2,
                measuring: true,
            },
        );
        assert!(text.contains("# TYPE precisiond_failures_total counter\n"));
        assert!(text.contains("\nprecisiond_failures_total 2\n"));
        assert!(text.contains("\nprecisiond_queue_length 3\n"));
        assert!(text.contains("\nprecisiond_measuring 1\n"));
        assert!(text.contains("\nprecisiond_reports{status=\"ok\"} 0\n"));
        assert!(text.contains("\nprecisiond_reports{status=\"failed\"} 0\n"));
        assert!(text.contains(&format!(
            "\nprecisiond_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        // No family without samples, so no HELP line on its own.
        assert!(!text.contains("precisiond_latency_seconds"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_textfile_is_replaced_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        write_textfile(dir.path(), "a 1\n").unwrap();
        write_textfile(dir.path(), "a 2\n").unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![FILE_NAME.to_owned()]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "a 2\n"
        );
    }
}
