//! `precisiond summarize`'s four formats, after hyperfine's exports:
//! `table` (aligned columns for a terminal), `markdown` (a GitHub table,
//! numbers right-aligned), `csv` (RFC 4180, one header row of snake_case
//! field names) and `json` (`{"rows": [...], "best": [...], "skipped":
//! [...]}`). The field names of CSV and JSON are stable; scripts read them.

use crate::summarize::{Best, Floor, Row, Summary};
use precisiond_core::conditions::Quality;
use precisiond_core::output::table::{opt, yes_no};
use precisiond_core::report::SpeedupWithheld;
use std::fmt::Write as _;

/// The CSV header: the JSON rows' field names, in the same order.
pub const CSV_FIELDS: [&str; 21] = [
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
];

const TABLE_HEADER: [&str; 16] = [
    "model",
    "host",
    "device",
    "hardware",
    "precision",
    "status",
    "median ms",
    "speedup",
    "cosine",
    "sqnr dB",
    "native",
    "accelerated",
    "quality",
    "emulated",
    "mJ/inference",
    "best",
];

/// Which of `TABLE_HEADER`'s columns hold numbers (right-aligned in Markdown).
const TABLE_NUMERIC: [bool; 16] = [
    false, false, false, false, false, false, true, true, true, true, false, false, false, false,
    true, false,
];

const BEST_HEADER: [&str; 10] = [
    "model",
    "host",
    "device",
    "hardware",
    "best precision",
    "median ms",
    "speedup",
    "cosine",
    "sqnr dB",
    "notes",
];

const BEST_NUMERIC: [bool; 10] = [
    false, false, false, false, false, true, true, true, true, false,
];

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

fn table_cells(r: &Row) -> [String; 16] {
    [
        r.model.clone(),
        r.host.clone(),
        r.device.to_string(),
        dash(&r.device_name),
        r.precision.clone(),
        if r.regression == Some(true) {
            format!("{} REGRESSION", r.status.word())
        } else {
            r.status.word().to_owned()
        },
        opt(r.median_ms, 3),
        r.speedup_vs_fp32
            .map(precisiond_core::speedup::format_x)
            .unwrap_or_else(|| "-".into()),
        opt(r.cosine, 6),
        opt(r.sqnr_db, 1),
        yes_no(r.native).into(),
        r.accelerated.map_or("-", yes_no).into(),
        r.quality.map_or_else(|| "-".into(), |q| q.to_string()),
        if r.emulated { "EMULATED" } else { "no" }.into(),
        opt(r.energy_mj_per_inference, 3),
        if r.best { "BEST" } else { "" }.into(),
    ]
}

fn best_notes(b: &Best) -> String {
    let mut notes = Vec::new();
    if b.emulated {
        notes.push("EMULATED format (no native arithmetic), yet the fastest".to_owned());
    }
    if let Some(q) = b.quality.filter(|q| *q != Quality::Clean) {
        notes.push(format!("timing {q}"));
    }
    // Its own unclean timing is said above; FP32's is not otherwise seen.
    if b.speedup_withheld == Some(SpeedupWithheld::Fp32Unclean) {
        notes.push("no speedup: FP32's timing was contended or throttled".to_owned());
    }
    if !b.faster_excluded.is_empty() {
        notes.push(format!(
            "faster but excluded: {}",
            b.faster_excluded.join("; ")
        ));
    }
    notes.join("; ")
}

fn best_cells(b: &Best) -> [String; 10] {
    [
        b.model.clone(),
        b.host.clone(),
        b.device.to_string(),
        dash(&b.device_name),
        b.precision.clone(),
        format!("{:.3}", b.median_ms),
        b.speedup_vs_fp32
            .map(precisiond_core::speedup::format_x)
            .unwrap_or_else(|| "-".into()),
        opt(b.cosine, 6),
        opt(b.sqnr_db, 1),
        best_notes(b),
    ]
}

fn floor_line(floor: Floor) -> String {
    format!(
        "best per device (fastest ok result with cosine >= {} and SQNR >= {} dB; FP32 always qualifies)",
        floor.min_cosine, floor.min_sqnr_db
    )
}

/// Aligned columns, then the best precision per model and device.
pub fn table(summary: &Summary, floor: Floor) -> String {
    let rows: Vec<[String; 16]> = summary.rows.iter().map(table_cells).collect();
    let mut out = precisiond_core::output::table::grid(TABLE_HEADER, &rows, true);
    out.push('\n');
    let _ = writeln!(out, "{}:", floor_line(floor));
    let best: Vec<[String; 10]> = summary.best.iter().map(best_cells).collect();
    out.push_str(&precisiond_core::output::table::grid(
        BEST_HEADER,
        &best,
        true,
    ));
    out
}

/// A Markdown cell: `|` escaped, line breaks as spaces.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn md_table<const N: usize>(header: [&str; N], numeric: [bool; N], rows: &[[String; N]]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(header.iter().map(|h| md_cell(h)).collect()));
    out.push_str(&line(
        numeric
            .iter()
            .map(|&n| if n { "---:" } else { ":---" }.to_owned())
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(|c| md_cell(c)).collect()));
    }
    out
}

/// A GitHub table, then a heading and table of the best per device.
pub fn markdown(summary: &Summary, floor: Floor) -> String {
    let rows: Vec<[String; 16]> = summary.rows.iter().map(table_cells).collect();
    let mut out = md_table(TABLE_HEADER, TABLE_NUMERIC, &rows);
    out.push('\n');
    let mut title = floor_line(floor);
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let _ = writeln!(out, "### {title}\n");
    let best: Vec<[String; 10]> = summary.best.iter().map(best_cells).collect();
    out.push_str(&md_table(BEST_HEADER, BEST_NUMERIC, &best));
    out
}

/// One CSV field, quoted (RFC 4180) where it holds a comma, a quote or a
/// line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn boolean(b: bool) -> String {
    b.to_string()
}

/// A header row of [`CSV_FIELDS`], then one row per result; empty where a
/// value is absent. Fields are quoted as RFC 4180 has it; lines end in
/// `\n` (RFC 4180 readers take it as well as CRLF).
pub fn csv(summary: &Summary) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let fields: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    };
    let header: Vec<String> = CSV_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    line(&mut out, &header);
    for r in &summary.rows {
        let cells: [String; 21] = [
            r.model.clone(),
            r.model_sha256.clone(),
            r.host.clone(),
            r.cpu_model.clone(),
            r.device.to_string(),
            r.device_name.clone(),
            r.precision.clone(),
            r.status.word().to_owned(),
            num(r.median_ms),
            num(r.speedup_vs_fp32),
            num(r.cosine),
            num(r.sqnr_db),
            boolean(r.native),
            r.accelerated.map(boolean).unwrap_or_default(),
            r.quality.map(|q| q.to_string()).unwrap_or_default(),
            boolean(r.emulated),
            num(r.energy_mj_per_inference),
            boolean(r.best),
            r.report.clone(),
            num(r.previous_median_ms),
            r.regression.map(boolean).unwrap_or_default(),
        ];
        line(&mut out, &cells);
    }
    out
}

/// `{"rows": [...], "best": [...], "skipped": [...]}`, pretty-printed.
/// Non-finite numbers (an infinite SQNR) become null.
pub fn json(summary: &Summary) -> String {
    let mut s = serde_json::to_string_pretty(summary).expect("the summary serializes");
    s.push('\n');
    s
}

/// Text for HTML: `&`, `<`, `>` and quotes escaped.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table<const N: usize>(
    id: &str,
    header: [&str; N],
    numeric: [bool; N],
    rows: &[[String; N]],
) -> String {
    let mut out = format!("<table id=\"{id}\">\n<thead><tr>");
    for h in header {
        out.push_str(&format!("<th>{}</th>", html_escape(h)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (cell, &n) in row.iter().zip(numeric.iter()) {
            let class = if n { " class=\"n\"" } else { "" };
            out.push_str(&format!("<td{class}>{}</td>", html_escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// One static page: the fleet table, the best per device, and the chart
/// of every report read (`charts`: a heading and the SVG text), inline,
/// so the page is one file that opens anywhere.
pub fn html(summary: &Summary, floor: Floor, charts: &[(String, String)]) -> String {
    let rows: Vec<[String; 16]> = summary.rows.iter().map(table_cells).collect();
    let best: Vec<[String; 10]> = summary.best.iter().map(best_cells).collect();
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>precisiond: fleet summary</title>\n<style>\n\
         body { font-family: sans-serif; margin: 1.5em; }\n\
         table { border-collapse: collapse; margin-bottom: 1.5em; }\n\
         th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; }\n\
         th { background: #eef; } td.n { text-align: right; }\n\
         section.chart { margin: 1em 0; }\n</style>\n</head>\n<body>\n",
    );
    out.push_str(&format!(
        "<h1>precisiond: {} report(s)</h1>\n<h2>Results</h2>\n",
        summary.reports_read
    ));
    out.push_str(&html_table("results", TABLE_HEADER, TABLE_NUMERIC, &rows));
    let mut title = floor_line(floor);
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    out.push_str(&format!("<h2>{}</h2>\n", html_escape(&title)));
    out.push_str(&html_table("best", BEST_HEADER, BEST_NUMERIC, &best));
    out.push_str("<h2>Charts</h2>\n");
    for (heading, svg) in charts {
        // The SVG inline: drop an XML declaration, which HTML does not take.
        let svg = match svg.find("<svg") {
            Some(i) => &svg[i..],
            None => svg.as_str(),
        };
        out.push_str(&format!(
            "<section class=\"chart\">\n<h3>{}</h3>\n{svg}\n</section>\n",
            html_escape(heading)
        ));
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    fn best(quality: Option<Quality>, withheld: Option<SpeedupWithheld>) -> Best {
        Best {
            model: "m.pt".into(),
            model_sha256: "ab".into(),
            host: "h".into(),
            cpu_model: "c".into(),
            device: precisiond_core::devices::Device::Cuda(1),
            device_name: "Orin".into(),
            precision: "fp16".into(),
            median_ms: 1.0,
            speedup_vs_fp32: None,
            cosine: Some(1.0),
            sqnr_db: None,
            emulated: false,
            quality,
            faster_excluded: Vec::new(),
            speedup_withheld: withheld,
        }
    }

    #[test]
    fn best_notes_read_quality_and_the_withheld_speedup_from_their_fields() {
        let clean = best(Some(Quality::Clean), None);
        assert_eq!(best_notes(&clean), "");
        assert_eq!(best_cells(&clean)[2], "cuda:1");
        let fp32_spoiled = best(Some(Quality::Clean), Some(SpeedupWithheld::Fp32Unclean));
        assert_eq!(
            best_notes(&fp32_spoiled),
            "no speedup: FP32's timing was contended or throttled"
        );
        let own = best(Some(Quality::Throttled), Some(SpeedupWithheld::Unclean));
        assert_eq!(best_notes(&own), "timing throttled");
        let json = serde_json::to_value(&fp32_spoiled).unwrap();
        assert_eq!(json["device"], "cuda:1");
        assert_eq!(json["quality"], "clean");
        assert!(json.get("speedup_withheld").is_none(), "not a JSON field");
    }

    #[test]
    fn markdown_escapes_pipes() {
        assert_eq!(md_cell("a|b"), "a\\|b");
    }
}
