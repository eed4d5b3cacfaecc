//! A chart of one report as SVG text (`NAME.pt.report.svg` beside the
//! TOML report): latency per result with its spread, the speedup over
//! FP32, and how far each precision's outputs drift from FP32's.
//!
//! Drawn with plotters' SVG backend alone: it writes `<text>` elements
//! itself, so no font library or system font is needed, and the file is a
//! plain SVG any image viewer shows.

use crate::conditions::Quality;
use crate::precision::Precision;
use crate::report::{PrecisionResult, Report, Status};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";
const NATIVE: RGBColor = RGBColor(66, 120, 200);
const EMULATED: RGBColor = RGBColor(165, 165, 165);
const HATCH: RGBColor = RGBColor(90, 90, 90);
const CONTENDED: RGBColor = RGBColor(230, 115, 0);
const DRIFT: RGBColor = RGBColor(120, 80, 170);
const LIMIT: RGBColor = RGBColor(200, 30, 30);
const MUTED: RGBColor = RGBColor(90, 90, 90);

/// Pixels per result row of the latency and accuracy panels.
const LATENCY_ROW: u32 = 54;
const DRIFT_ROW: u32 = 44;
/// Height of the panels' caption, axis and margins together.
const PANEL_FRAME: u32 = 90;
const LINE: u32 = 18;

/// Where a report's chart goes: `NAME.pt.report.toml` -> `NAME.pt.report.svg`.
pub fn svg_path(report_path: &Path) -> PathBuf {
    report_path.with_extension("svg")
}

/// One result drawn in the latency panel.
struct LatencyRow<'a> {
    result: &'a PrecisionResult,
    median: f64,
    min: f64,
    p90: f64,
    iterations: usize,
}

/// One result drawn in the accuracy panel.
struct DriftRow<'a> {
    result: &'a PrecisionResult,
    /// 1 - cosine, floored so that a log scale can show it.
    drift: f64,
    cosine: f64,
}

/// The smallest 1 - cosine drawn: below it the outputs are as good as equal.
const DRIFT_FLOOR: f64 = 1e-9;

fn finite_positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn is_emulated(r: &PrecisionResult) -> bool {
    r.status == Status::Ok && !r.native
}

fn is_unclean(r: &PrecisionResult) -> bool {
    matches!(r.quality, Some(Quality::Contended | Quality::Throttled))
}

/// "cpu fp16", with "EMULATED" and "contended"/"throttled" where they apply.
fn row_label(r: &PrecisionResult) -> String {
    let mut label = format!("{} {}", r.device, r.precision_label());
    if is_emulated(r) {
        label.push_str(" EMULATED");
    }
    if let Some(q @ (Quality::Contended | Quality::Throttled)) = r.quality {
        label.push(' ');
        label.push_str(&q.to_string());
    }
    label
}

/// "1.63x", with its interval where the report has one; or why there is none.
fn speedup_label(r: &PrecisionResult) -> Option<String> {
    if r.precision == Precision::Fp32
        && r.runtime.is_none()
        && r.method != crate::report::Method::Tensorrt
    {
        return None;
    }
    match r.speedup_vs_fp32 {
        Some(s) if s.is_finite() => Some(match r.speedup_ci_vs_fp32 {
            Some([lo, hi]) if lo.is_finite() && hi.is_finite() => {
                format!("{s:.2}x  (95% CI {lo:.2}-{hi:.2})")
            }
            _ => format!("{s:.2}x"),
        }),
        // The report withholds the speedup where either timing is not
        // clean; a report written before `speedup_withheld` existed still
        // says so by this result's own quality.
        _ if r.speedup_withheld.is_some() || is_unclean(r) => Some("speedup withheld".to_owned()),
        _ => Some("no speedup recorded".to_owned()),
    }
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else if v >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 3).collect();
        t.push_str("...");
        t
    }
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the chart: {e:?}")
}

/// The chart of `report` as SVG text.
pub fn report_svg(report: &Report) -> Result<String, String> {
    let mut latency = Vec::new();
    let mut not_drawn = Vec::new();
    for r in &report.results {
        if r.status != Status::Ok {
            let why = if r.reason.is_empty() {
                "no reason given"
            } else {
                &r.reason
            };
            not_drawn.push(format!("{}: {}: {}", row_label(r), r.status.word(), why));
            continue;
        }
        match &r.latency_ms {
            Some(l) if finite_positive(l.median) && finite_positive(l.min) && l.p90.is_finite() => {
                latency.push(LatencyRow {
                    result: r,
                    median: l.median,
                    min: l.min.min(l.median),
                    p90: l.p90.max(l.median),
                    iterations: l.iterations,
                })
            }
            _ => not_drawn.push(format!("{}: ok, but no latency to draw", row_label(r))),
        }
    }
    let drift: Vec<DriftRow> = report
        .results
        .iter()
        .filter(|r| r.status == Status::Ok && r.precision != Precision::Fp32)
        .filter_map(|r| {
            let cosine = r.accuracy.as_ref()?.worst.cosine?;
            cosine.is_finite().then(|| DriftRow {
                result: r,
                drift: (1.0 - cosine).max(DRIFT_FLOOR),
                cosine,
            })
        })
        .collect();

    let header_h = 148;
    let latency_h = PANEL_FRAME + LATENCY_ROW * latency.len().max(1) as u32;
    let drift_h = PANEL_FRAME + DRIFT_ROW * drift.len().max(1) as u32;
    let footer_lines = if not_drawn.is_empty() {
        0
    } else {
        not_drawn.len() + 1
    };
    let footer_h = 16 + LINE * footer_lines as u32;
    let height = header_h + latency_h + drift_h + footer_h;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (header, rest) = root.split_vertically(header_h);
        let (latency_area, rest) = rest.split_vertically(latency_h);
        let (drift_area, footer) = rest.split_vertically(drift_h);
        draw_header(&header, report)?;
        draw_latency(&latency_area, &latency)?;
        draw_drift(&drift_area, &drift, report)?;
        if !not_drawn.is_empty() {
            let style = TextStyle::from((FONT, 15).into_font()).color(&MUTED);
            footer
                .draw_text(
                    "Not measured (not drawn):",
                    &style.clone().color(&BLACK),
                    (16, 4),
                )
                .map_err(err)?;
            for (i, line) in not_drawn.iter().enumerate() {
                footer
                    .draw_text(
                        &truncate(line, 130),
                        &style,
                        (28, 4 + LINE as i32 * (i as i32 + 1)),
                    )
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn draw_header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), String> {
    let cpu = report
        .hardware
        .as_ref()
        .map(|h| h.cpu.model.as_str())
        .unwrap_or("CPU not recorded");
    let title = format!(
        "{}  -  host {}  -  {}",
        report.model.file, report.run.host, cpu
    );
    area.draw_text(
        &truncate(&title, 90),
        &TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold)),
        (16, 10),
    )
    .map_err(err)?;
    let mut sub = format!(
        "precisiond {}, libtorch {}, {} thread(s), {} - {}",
        report.run.precisiond,
        report.run.libtorch,
        report.run.threads,
        report.run.started,
        report.run.finished
    );
    if let Some(emu) = &report.run.emulator {
        sub.push_str(&format!(
            "; timed under the emulator {emu}: the emulator's speed"
        ));
    }
    let small = TextStyle::from((FONT, 15).into_font()).color(&MUTED);
    area.draw_text(&truncate(&sub, 140), &small, (16, 38))
        .map_err(err)?;

    // The legend: a swatch and a sentence for each way a bar is drawn.
    let y0 = 62;
    let items: [(&str, u8); 3] = [
        ("native arithmetic, clean timing", 0),
        (
            "EMULATED: no hardware arithmetic for this precision (grey, hatched)",
            1,
        ),
        (
            "contended / throttled: not the model's speed alone (orange outline)",
            2,
        ),
    ];
    for (i, (text, kind)) in items.iter().enumerate() {
        let y = y0 + i as i32 * 20;
        let (x0, x1) = (16, 46);
        let (top, bottom) = (y, y + 13);
        match kind {
            0 => area
                .draw(&Rectangle::new([(x0, top), (x1, bottom)], NATIVE.filled()))
                .map_err(err)?,
            1 => {
                area.draw(&Rectangle::new(
                    [(x0, top), (x1, bottom)],
                    EMULATED.filled(),
                ))
                .map_err(err)?;
                for seg in hatch_segments((x0, top), (x1, bottom)) {
                    area.draw(&PathElement::new(seg, HATCH.stroke_width(1)))
                        .map_err(err)?;
                }
            }
            _ => area
                .draw(&PathElement::new(
                    outline((x0, top), (x1, bottom)),
                    CONTENDED.stroke_width(3),
                ))
                .map_err(err)?,
        }
        area.draw_text(text, &TextStyle::from((FONT, 15).into_font()), (56, top))
            .map_err(err)?;
    }
    area.draw_text(
        "Bar and black tick: median; whisker: min to p90 (the report records no p10); speedup: FP32's median over this one's, as the report gives it",
        &small,
        (16, y0 + 3 * 20),
    )
    .map_err(err)?;
    Ok(())
}

/// The closed path around a rectangle (the SVG backend draws a
/// rectangle's outline 1 px wide whatever the style says).
fn outline<T: Copy>(a: (T, T), b: (T, T)) -> Vec<(T, T)> {
    vec![a, (b.0, a.1), b, (a.0, b.1), a]
}

/// Diagonal hatching lines (45 degrees, 6 px apart) filling a pixel rectangle.
fn hatch_segments((x0, y0): (i32, i32), (x1, y1): (i32, i32)) -> Vec<Vec<(i32, i32)>> {
    let h = y1 - y0;
    let mut out = Vec::new();
    let mut k = x0 - h;
    while k < x1 {
        // The line x - k = y1 - y, for y from y1 (at x = k) up to y0 (at x = k + h).
        let (sx, ex) = (k.max(x0), (k + h).min(x1));
        if sx < ex {
            out.push(vec![(sx, y1 - (sx - k)), (ex, y1 - (ex - k))]);
        }
        k += 6;
    }
    out
}

/// A log range covering `lo..hi` with `pad_low` and `pad_high` factors of room.
fn log_range(lo: f64, hi: f64, pad_low: f64, pad_high: f64) -> (f64, f64) {
    let lo = lo / pad_low;
    let hi = (hi * pad_high).max(lo * 10.0);
    (lo, hi)
}

/// A panel with nothing to draw: its caption, and why.
fn draw_empty_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    why: &str,
) -> Result<(), String> {
    area.draw_text(caption, &TextStyle::from((FONT, 18).into_font()), (16, 10))
        .map_err(err)?;
    area.draw_text(why, &TextStyle::from((FONT, 15).into_font()), (16, 40))
        .map_err(err)?;
    Ok(())
}

/// A panel's axes, drawn: one row per result (y from -0.5 to rows - 0.5,
/// no y labels: the rows label themselves) against a log-scale x from
/// `lo` to `hi`.
fn row_axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    (lo, hi): (f64, f64),
    rows: usize,
    x_desc: &str,
    x_format: &dyn Fn(&f64) -> String,
) -> Result<
    ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, plotters::coord::types::RangedCoordf64>>,
    String,
> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(0)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(rows as f64 - 0.5))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(8)
        .x_label_formatter(x_format)
        .x_desc(x_desc)
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[LatencyRow],
) -> Result<(), String> {
    let caption = "Latency per result, ms (log scale)";
    if rows.is_empty() {
        return draw_empty_panel(area, caption, "no result has a latency");
    }
    let lo = rows.iter().map(|r| r.min).fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|r| r.p90).fold(0.0, f64::max);
    // Room on the right for the speedup labels.
    let (lo, hi) = log_range(lo, hi, 2.0, 6.0);
    let n = rows.len();
    let chart = row_axes(
        area,
        caption,
        (lo, hi),
        n,
        "milliseconds per forward() call",
        &|v| fmt_ms(*v),
    )?;
    let plot = chart.plotting_area();
    for (i, row) in rows.iter().enumerate() {
        // First result at the top.
        let y = (n - 1 - i) as f64;
        let r = row.result;
        let (bar_lo, bar_hi) = (y - 0.32, y + 0.02);
        let fill = if is_emulated(r) { EMULATED } else { NATIVE };
        let corner_a = (lo, bar_lo);
        let corner_b = (row.median, bar_hi);
        if is_unclean(r) {
            plot.draw(&Rectangle::new(
                [corner_a, corner_b],
                fill.mix(0.35).filled(),
            ))
            .map_err(err)?;
        } else {
            plot.draw(&Rectangle::new([corner_a, corner_b], fill.filled()))
                .map_err(err)?;
        }
        if is_emulated(r) {
            let (p0, p1) = (
                plot.map_coordinate(&corner_a),
                plot.map_coordinate(&corner_b),
            );
            let (px0, px1) = (p0.0.min(p1.0), p0.0.max(p1.0));
            let (py0, py1) = (p0.1.min(p1.1), p0.1.max(p1.1));
            let root = plot.strip_coord_spec();
            let (ox, oy) = (root.get_base_pixel().0, root.get_base_pixel().1);
            for seg in hatch_segments((px0, py0), (px1, py1)) {
                let seg: Vec<(i32, i32)> = seg.into_iter().map(|(x, y)| (x - ox, y - oy)).collect();
                root.draw(&PathElement::new(seg, HATCH.stroke_width(1)))
                    .map_err(err)?;
            }
        }
        if is_unclean(r) {
            plot.draw(&PathElement::new(
                outline(corner_a, corner_b),
                CONTENDED.stroke_width(3),
            ))
            .map_err(err)?;
        }
        // Whisker min .. p90 with end caps, and the median's tick.
        let mid = (bar_lo + bar_hi) / 2.0;
        let whisker = BLACK.stroke_width(2);
        plot.draw(&PathElement::new(
            vec![(row.min, mid), (row.p90, mid)],
            whisker,
        ))
        .map_err(err)?;
        for x in [row.min, row.p90] {
            plot.draw(&PathElement::new(
                vec![(x, mid - 0.1), (x, mid + 0.1)],
                whisker,
            ))
            .map_err(err)?;
        }
        plot.draw(&PathElement::new(
            vec![(row.median, bar_lo - 0.04), (row.median, bar_hi + 0.04)],
            BLACK.stroke_width(3),
        ))
        .map_err(err)?;
        // The label above the bar, the speedup right of the whisker.
        let stats = format!(
            "median {} ms  (min {}, p90 {}; {} call{})",
            fmt_ms(row.median),
            fmt_ms(row.min),
            fmt_ms(row.p90),
            row.iterations,
            if row.iterations == 1 { "" } else { "s" }
        );
        let label_style = TextStyle::from((FONT, 16).into_font().style(FontStyle::Bold));
        let label = row_label(r);
        plot.draw(&Text::new(label.clone(), (lo, y + 0.46), label_style))
            .map_err(err)?;
        let label_px = plot.map_coordinate(&(lo, y + 0.46)).0
            + (8.5 * label.chars().count() as f64) as i32
            + 14;
        let stats_pos = plot.map_coordinate(&(lo, y + 0.46));
        let offset = plot.strip_coord_spec().get_base_pixel();
        plot.strip_coord_spec()
            .draw_text(
                &stats,
                &TextStyle::from((FONT, 15).into_font()).color(&MUTED),
                (label_px - offset.0, stats_pos.1 - offset.1 + 1),
            )
            .map_err(err)?;
        if let Some(s) = speedup_label(r) {
            let color = if s.starts_with("speedup") {
                MUTED
            } else {
                BLACK
            };
            let style = TextStyle::from((FONT, 16).into_font().style(FontStyle::Bold))
                .color(&color)
                .pos(Pos::new(HPos::Left, VPos::Center));
            plot.draw(&Text::new(s, (row.p90 * 1.15, mid), style))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn draw_drift<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[DriftRow],
    report: &Report,
) -> Result<(), String> {
    let caption = "Accuracy drift from FP32: 1 - cosine of the outputs (log scale; shorter is closer to FP32)";
    if rows.is_empty() {
        return draw_empty_panel(area, caption, "no result was compared with FP32");
    }
    let limit = report
        .run
        .accuracy
        .as_ref()
        .map(|a| 1.0 - a.min_cosine)
        .filter(|d| finite_positive(*d) && *d < 1.0);
    let lo = rows.iter().map(|r| r.drift).fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .map(|r| r.drift)
        .fold(0.0, f64::max)
        .max(limit.unwrap_or(0.0));
    let (lo, hi) = log_range(lo.min(hi), hi, 10.0, 10.0);
    let n = rows.len();
    let chart = row_axes(
        area,
        caption,
        (lo, hi),
        n,
        "1 - cosine (worst output)",
        &|v| format!("{v:.0e}"),
    )?;
    let plot = chart.plotting_area();
    if let Some(limit) = limit {
        plot.draw(&PathElement::new(
            vec![(limit, -0.5), (limit, n as f64 - 0.5)],
            LIMIT.stroke_width(2),
        ))
        .map_err(err)?;
        let style = TextStyle::from((FONT, 14).into_font())
            .color(&LIMIT)
            .pos(Pos::new(HPos::Right, VPos::Top));
        let min_cos = 1.0 - limit;
        plot.draw(&Text::new(
            format!("limit: cosine {min_cos}"),
            (limit / 1.1, n as f64 - 0.5),
            style,
        ))
        .map_err(err)?;
    }
    for (i, row) in rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let r = row.result;
        let bar = [(lo, y - 0.35), (row.drift, y + 0.05)];
        plot.draw(&Rectangle::new(bar, DRIFT.filled()))
            .map_err(err)?;
        let acc = r.accuracy.as_ref();
        let mut text = format!("{}: cosine {:.6}", row_label(r), row.cosine);
        if row.drift <= DRIFT_FLOOR {
            text.push_str(" (as good as identical)");
        }
        if let Some(sqnr) = acc.and_then(|a| a.worst.sqnr_db).filter(|v| v.is_finite()) {
            text.push_str(&format!(", SQNR {sqnr:.1} dB"));
        }
        if let Some(t) = acc.and_then(|a| a.top1_agreement).filter(|v| v.is_finite()) {
            text.push_str(&format!(", top-1 agreement {:.0}%", t * 100.0));
        }
        if r.accuracy_ok == Some(false) {
            text.push_str("  OUTSIDE THE LIMITS");
        }
        plot.draw(&Text::new(
            text,
            (lo, y + 0.47),
            TextStyle::from((FONT, 15).into_font()),
        ))
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/reports_svg"
    );
    /// The chart must stay small enough to attach or mail.
    const MAX_BYTES: usize = 50 * 1024;

    fn load(name: &str) -> Report {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
        toml::from_str(&text).unwrap()
    }

    /// The SVG parses as XML with an <svg> root; returns all its text.
    fn parse(svg: &str) -> String {
        let doc = roxmltree::Document::parse(svg).expect("the chart is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn no_nan(svg: &str) {
        let lower = svg.to_lowercase();
        assert!(!lower.contains("nan"), "NaN in the chart");
        assert!(!lower.contains("inf"), "inf in the chart");
    }

    #[test]
    fn real_report_all_contended() {
        let report = load("tiny_resnet_demo.toml");
        let svg = report_svg(&report).unwrap();
        assert!(svg.len() < MAX_BYTES, "{} bytes", svg.len());
        no_nan(&svg);
        let text = parse(&svg);
        assert!(text.contains("tiny_resnet.pt"));
        assert!(text.contains("host vm"));
        let cpu = &report.hardware.as_ref().unwrap().cpu.model;
        assert!(text.contains(cpu.as_str()));
        for r in &report.results {
            assert!(
                text.contains(&format!("cpu {}", r.precision_label())),
                "{}",
                r.precision_label()
            );
        }
        assert!(text.contains("cpu fp16 EMULATED contended"), "{text}");
        assert!(text.contains("cpu bf16 contended"));
        // Every result was contended: no speedup was computed.
        assert_eq!(text.matches("speedup withheld").count(), 3, "{text}");
        assert!(text.contains("EMULATED: no hardware arithmetic"), "legend");
        assert!(text.contains("contended / throttled"), "legend");
        assert!(!text.contains("Not measured"));
    }

    #[test]
    fn edited_report_one_contended_speedups_and_skipped() {
        let report = load("edited_one_contended.toml");
        let svg = report_svg(&report).unwrap();
        assert!(svg.len() < MAX_BYTES, "{} bytes", svg.len());
        no_nan(&svg);
        let text = parse(&svg);
        for label in [
            "cpu fp32",
            "cpu fp16 EMULATED",
            "cpu bf16",
            "cpu int8 contended",
        ] {
            assert!(
                text.lines()
                    .any(|l| l == label || l.starts_with(&format!("{label}:"))),
                "{label}: {text}"
            );
        }
        assert!(!text.contains("fp16 EMULATED contended"));
        assert!(!text.contains("bf16 contended"));
        assert!(text.contains("0.24x"), "{text}");
        assert!(text.contains("0.18x"), "{text}");
        assert_eq!(text.matches("speedup withheld").count(), 1);
        // FP32 has no speedup label of its own.
        assert!(!text.contains("1.00x"));
        assert!(text.contains("cosine 0.999998"));
        assert!(text.contains("SQNR"));
        assert!(text.contains("Not measured"));
        assert!(
            text.contains("cpu int8 (tensorrt): skipped: TensorRT: no trtexec found on PATH"),
            "{text}"
        );
    }

    #[test]
    fn a_speedup_withheld_for_fp32s_timing_says_so() {
        // A clean result whose FP32 timing was contended: only the field
        // says why there is no speedup, whatever the notes say.
        let mut report = load("edited_one_contended.toml");
        let bf16 = report
            .results
            .iter_mut()
            .find(|r| r.precision == Precision::Bf16 && r.method != crate::report::Method::Tensorrt)
            .unwrap();
        assert_eq!(bf16.quality, Some(Quality::Clean));
        bf16.speedup_vs_fp32 = None;
        bf16.speedup_ci_vs_fp32 = None;
        bf16.notes.clear();
        let without = parse(&report_svg(&report).unwrap());
        assert_eq!(without.matches("speedup withheld").count(), 1, "{without}");
        assert!(without.contains("no speedup recorded"), "{without}");

        let bf16 = report
            .results
            .iter_mut()
            .find(|r| r.precision == Precision::Bf16 && r.method != crate::report::Method::Tensorrt)
            .unwrap();
        bf16.speedup_withheld = Some(crate::report::SpeedupWithheld::Fp32Unclean);
        let with = parse(&report_svg(&report).unwrap());
        assert_eq!(with.matches("speedup withheld").count(), 2, "{with}");
        assert!(!with.contains("no speedup recorded"), "{with}");
    }

    #[test]
    fn no_results_still_draws() {
        let mut report = load("tiny_resnet_demo.toml");
        report.results.clear();
        let svg = report_svg(&report).unwrap();
        let text = parse(&svg);
        assert!(text.contains("no result has a latency"));
        assert!(text.contains("no result was compared with FP32"));
    }

    #[test]
    fn nan_figures_are_left_out() {
        let mut report = load("edited_one_contended.toml");
        report.results[1].latency_ms.as_mut().unwrap().median = f64::NAN;
        report.results[2].speedup_vs_fp32 = Some(f64::INFINITY);
        report.results[3].accuracy.as_mut().unwrap().worst.cosine = Some(f64::NAN);
        let svg = report_svg(&report).unwrap();
        no_nan(&svg);
        let text = parse(&svg);
        assert!(
            text.contains("cpu fp16 EMULATED: ok, but no latency to draw"),
            "{text}"
        );
    }

    #[test]
    fn svg_path_beside_the_report() {
        assert_eq!(
            svg_path(Path::new("/m/resnet.pt.report.toml")),
            PathBuf::from("/m/resnet.pt.report.svg")
        );
        assert_eq!(
            svg_path(Path::new("a.pt2.report.toml")),
            PathBuf::from("a.pt2.report.svg")
        );
    }

    /// Writes the demo report's chart to /tmp/chart.svg to look at
    /// (`cargo test ... write_demo_chart -- --ignored`).
    #[test]
    #[ignore = "a tool, not a check: writes /tmp/chart.svg to look at"]
    fn write_demo_chart() {
        for (name, out) in [
            ("tiny_resnet_demo.toml", "/tmp/chart.svg"),
            ("edited_one_contended.toml", "/tmp/chart-edited.svg"),
        ] {
            std::fs::write(out, report_svg(&load(name)).unwrap()).unwrap();
        }
    }
}
