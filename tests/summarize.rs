//! `precisiond summarize` end to end, on the reports of several simulated
//! devices in tests/fixtures/reports/fleet (README.md there says how they
//! were made). No libtorch needed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fleet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports/fleet")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn summarize_in(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_precisiond"))
        .arg("summarize")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("precisiond runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn summarize(args: &[&str]) -> Out {
    let fleet = fleet();
    let mut all = vec![fleet.to_str().unwrap()];
    all.extend_from_slice(args);
    summarize_in(Path::new(env!("CARGO_MANIFEST_DIR")), &all)
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = summarize(&all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("stdout is JSON")
}

/// The best entry for a host and device.
fn best_for<'a>(v: &'a serde_json::Value, host: &str, device: &str) -> &'a serde_json::Value {
    v["best"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["host"] == host && b["device"] == device)
        .unwrap_or_else(|| panic!("no best for {host} {device}"))
}

/// 4 devices of mlp (lab-x86 cpu, jetson1 cpu and cuda:0, old-box cpu)
/// and 1 of tiny_resnet: 4 + 4 + 2 + 2 + 4 results.
const ROWS: usize = 16;
const BESTS: usize = 5;

/// A small RFC 4180 reader: quoted fields, doubled quotes, commas and
/// line breaks inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV ends with a newline"
    );
    rows
}

#[test]
fn broken_future_and_unreadable_old_reports_are_named_on_stderr_only() {
    let out = summarize(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (file, why) in [
        ("broken/garbage.report.toml", "not TOML"),
        ("broken/not-a-report.report.toml", "not a precisiond report"),
        ("future/mlp.pt.report.toml", "schema_version 2 is newer"),
        ("old/ancient.report.toml", "older schema_version 0"),
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not named on stderr:\n{}", out.stderr));
        assert!(line.starts_with("precisiond: skipped "), "{line}");
        assert!(line.contains(why), "{line}");
        assert!(!out.stdout.contains(file), "stdout names {file}");
    }
    assert_eq!(out.stderr.lines().count(), 4, "{}", out.stderr);
    assert!(!out.stdout.contains("precisiond:"));
    assert!(!out.stdout.contains("future-box"));
}

#[test]
fn table_lists_every_row_and_the_best_per_device() {
    let out = summarize(&["--format", "table"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("model "), "{}", lines[0]);
    assert!(lines[1].starts_with("-----"));
    let rows: Vec<&&str> = lines[2..].iter().take_while(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), ROWS, "{}", out.stdout);
    for host in ["lab-x86", "jetson1", "old-box", "nuc-rapl"] {
        assert!(rows.iter().any(|r| r.contains(host)), "{host} missing");
    }
    assert!(rows.iter().any(|r| r.contains("Orin")));
    assert!(out.stdout.contains("best per device"));
    let best_at = lines
        .iter()
        .position(|l| l.starts_with("best per device"))
        .unwrap();
    let best: Vec<&&str> = lines[best_at + 3..].iter().collect();
    assert_eq!(best.len(), BESTS, "{}", out.stdout);
    let lab = best.iter().find(|l| l.contains("lab-x86")).unwrap();
    assert!(lab.contains(" bf16 "), "{lab}");
    assert!(lab.contains("int8: cosine 0.950000 < 0.99"), "{lab}");
    let jetson = best
        .iter()
        .find(|l| l.contains("jetson1") && l.contains(" cpu "))
        .unwrap();
    assert!(jetson.contains("EMULATED"), "{jetson}");
}

#[test]
fn markdown_is_a_github_table_with_numbers_right_aligned() {
    let out = summarize(&["--format", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("| model | host | device |"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("| :--- |"), "{}", lines[1]);
    assert!(lines[1].contains("| ---: |"), "{}", lines[1]);
    let columns = lines[0].matches(" | ").count();
    assert_eq!(lines[1].matches(" | ").count(), columns);
    let rows = lines[2..].iter().take_while(|l| l.starts_with('|')).count();
    assert_eq!(rows, ROWS);
    let heading = lines
        .iter()
        .position(|l| l.starts_with("### Best per device"))
        .unwrap();
    assert!(lines[heading + 2].starts_with("| model |"));
    assert!(lines[heading + 3].starts_with("| :--- |"));
    assert_eq!(lines.len(), heading + 4 + BESTS, "{}", out.stdout);
}

#[test]
fn csv_parses_back_with_stable_header_and_a_best_column() {
    let out = summarize(&["--format", "csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = parse_csv(&out.stdout);
    let header: Vec<&str> = rows[0].iter().map(String::as_str).collect();
    assert_eq!(
        header,
        [
            "model",
            "model_sha256",
            "host",
            "cpu_model",
            "device",
            "device_name",
            "precision",
            "status",
            "median_ms",
            "speedup_vs_fp32",
            "cosine",
            "sqnr_db",
            "native",
            "accelerated",
            "quality",
            "emulated",
            "energy_mj_per_inference",
            "best",
            "report",
            "previous_median_ms",
            "regression",
        ]
    );
    let data = &rows[1..];
    assert_eq!(data.len(), ROWS);
    assert!(data.iter().all(|r| r.len() == header.len()));
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // "mlp.pt, mlp_v2.pt" holds a comma: quoted, and read back whole.
    assert!(out.stdout.contains("\"mlp.pt, mlp_v2.pt\""));
    assert!(data.iter().any(|r| r[col("model")] == "mlp.pt, mlp_v2.pt"));
    let best: Vec<&Vec<String>> = data.iter().filter(|r| r[col("best")] == "true").collect();
    assert_eq!(best.len(), BESTS);
    assert!(data
        .iter()
        .all(|r| r[col("best")] == "true" || r[col("best")] == "false"));
    let lab_best = best.iter().find(|r| r[col("host")] == "lab-x86").unwrap();
    assert_eq!(lab_best[col("precision")], "bf16");
    let median: f64 = lab_best[col("median_ms")].parse().unwrap();
    assert_eq!(median, 0.005);
    // Energy where the report has it, empty where not.
    let nuc_int8 = data
        .iter()
        .find(|r| r[col("host")] == "nuc-rapl" && r[col("precision")] == "int8")
        .unwrap();
    assert!(
        nuc_int8[col("energy_mj_per_inference")]
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let old = data.iter().find(|r| r[col("host")] == "old-box").unwrap();
    assert_eq!(old[col("energy_mj_per_inference")], "");
    assert_eq!(old[col("quality")], "");
}

#[test]
fn json_has_rows_best_and_skipped_with_stable_fields() {
    let v = json(&[]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ROWS);
    let mut keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut expected = precisiond::summarize::format::CSV_FIELDS.to_vec();
    expected.sort();
    assert_eq!(keys, expected);
    for key in [
        "model",
        "model_sha256",
        "host",
        "cpu_model",
        "device",
        "device_name",
        "precision",
        "median_ms",
        "speedup_vs_fp32",
        "cosine",
        "sqnr_db",
        "emulated",
        "quality",
        "faster_excluded",
    ] {
        assert!(v["best"][0].get(key).is_some(), "best lacks {key}");
    }
    assert_eq!(v["best"].as_array().unwrap().len(), BESTS);
    let skipped = v["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 4);
    assert!(skipped
        .iter()
        .all(|s| s["path"].is_string() && s["why"].is_string()));
}

#[test]
fn best_is_the_fastest_within_the_floor_and_flags_emulated_formats() {
    let v = json(&[]);
    // lab-x86: int8 (0.003 ms) fails the cosine floor; bf16 (0.005) wins.
    let lab = best_for(&v, "lab-x86", "cpu");
    assert_eq!(lab["precision"], "bf16");
    assert_eq!(lab["emulated"], false);
    assert_eq!(lab["faster_excluded"][0], "int8: cosine 0.950000 < 0.99");
    // jetson1 cpu: int8 fails the SQNR floor; fp16, not native, is next.
    let jetson = best_for(&v, "jetson1", "cpu");
    assert_eq!(jetson["precision"], "fp16");
    assert_eq!(jetson["emulated"], true);
    assert_eq!(jetson["faster_excluded"][0], "int8: sqnr 15.0 dB < 20 dB");
    let gpu = best_for(&v, "jetson1", "cuda:0");
    assert_eq!(gpu["precision"], "fp16");
    assert_eq!(gpu["device_name"], "Orin");
    // Only FP32 measured ok: FP32.
    assert_eq!(best_for(&v, "old-box", "cpu")["precision"], "fp32");
    assert_eq!(best_for(&v, "nuc-rapl", "cpu")["precision"], "int8");
    // Exactly the best rows are marked.
    let marked: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["best"] == true)
        .collect();
    assert_eq!(marked.len(), BESTS);
}

#[test]
fn the_floors_come_from_the_flags() {
    // A stricter cosine floor excludes lab-x86's bf16 (0.9999): fp32 is
    // faster than fp16 there.
    let v = json(&["--min-cosine", "0.99999"]);
    assert_eq!(best_for(&v, "lab-x86", "cpu")["precision"], "fp32");
    // A lower SQNR floor lets jetson1's int8 (15 dB, cosine 0.995) in.
    let v = json(&["--min-sqnr-db", "10"]);
    assert_eq!(best_for(&v, "jetson1", "cpu")["precision"], "int8");
    let out = summarize(&["--min-cosine", "2"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--min-cosine"), "{}", out.stderr);
}

#[test]
fn renamed_copies_group_by_sha256() {
    let v = json(&[]);
    let rows = v["rows"].as_array().unwrap();
    let model_of = |host: &str| {
        rows.iter()
            .find(|r| r["host"] == host)
            .map(|r| (r["model"].clone(), r["model_sha256"].clone()))
            .unwrap()
    };
    // jetson1 measured mlp_v2.pt, lab-x86 mlp.pt: the same file.
    assert_eq!(model_of("jetson1"), model_of("lab-x86"));
    assert_eq!(model_of("jetson1").0, "mlp.pt, mlp_v2.pt");
    assert_ne!(model_of("nuc-rapl").1, model_of("lab-x86").1);
}

#[test]
fn older_schema_reports_are_read_with_defaults() {
    let v = json(&[]);
    let old: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["host"] == "old-box")
        .collect();
    assert_eq!(old.len(), 2);
    assert_eq!(old[0]["precision"], "fp32");
    assert_eq!(old[0]["quality"], serde_json::Value::Null);
    assert_eq!(old[0]["cpu_model"], "");
    assert_eq!(old[1]["status"], "unsupported");
}

#[test]
fn rows_sort_by_model_or_by_device() {
    let hosts = |v: &serde_json::Value| {
        let mut seen: Vec<String> = Vec::new();
        for r in v["rows"].as_array().unwrap() {
            let h = r["host"].as_str().unwrap().to_owned();
            if seen.last() != Some(&h) {
                seen.push(h);
            }
        }
        seen
    };
    // By model: mlp's hosts, then tiny_resnet's.
    assert_eq!(
        hosts(&json(&[])),
        ["jetson1", "lab-x86", "old-box", "nuc-rapl"]
    );
    assert_eq!(
        hosts(&json(&["--by", "device"])),
        ["jetson1", "lab-x86", "nuc-rapl", "old-box"]
    );
    // Precisions in fp32, fp16, bf16, int8 order within a device.
    let v = json(&[]);
    let lab: Vec<_> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["host"] == "lab-x86")
        .map(|r| r["precision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lab, ["fp32", "fp16", "bf16", "int8"]);
}

#[test]
fn exits_1_when_no_report_is_read() {
    let empty = tempfile::tempdir().unwrap();
    let out = summarize_in(empty.path(), &[]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("no readable precisiond report"),
        "{}",
        out.stderr
    );

    let broken = fleet().join("broken");
    let out = summarize_in(
        empty.path(),
        &[broken.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("garbage.report.toml"), "{}", out.stderr);

    let out = summarize_in(empty.path(), &["no-such-folder"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("skipped no-such-folder"),
        "{}",
        out.stderr
    );
}

#[test]
fn reads_the_current_folder_and_files_given_by_name() {
    let out = summarize_in(&fleet(), &["--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), ROWS);

    // A file named twice is read once.
    let lab = fleet().join("lab-x86/mlp.pt.report.toml");
    let lab = lab.to_str().unwrap();
    let out = summarize_in(&fleet(), &[lab, lab, "--format", "csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(parse_csv(&out.stdout).len(), 1 + 4);
}

#[test]
fn a_newer_report_of_the_same_model_and_machine_supersedes_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fleet().join("lab-x86/mlp.pt.report.toml")).unwrap();
    std::fs::write(dir.path().join("a.report.toml"), &text).unwrap();
    let newer = text.replace("finished = 2026-", "finished = 2027-");
    assert_ne!(newer, text);
    std::fs::write(dir.path().join("b.report.toml"), newer).unwrap();
    let out = summarize_in(dir.path(), &["--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);
    assert!(v["rows"][0]["report"]
        .as_str()
        .unwrap()
        .ends_with("b.report.toml"));
    assert!(
        out.stderr.contains("a.report.toml: superseded"),
        "{}",
        out.stderr
    );
}
