//! The tables printed on the terminal: the summary of `precisiond run` and
//! the hardware table of `precisiond detect --format text`. Both lay out
//! their columns with [`grid`], so they read alike.

use crate::conditions::Quality;
use crate::hardware::Hardware;
use crate::precision::Precision;
use crate::report::{OperatorProfile, OperatorTime, Report, Status};
use std::fmt::Write as _;

/// The summary table `precisiond run` prints.
pub fn report_summary(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} ({})\n",
        report.model.file,
        report.status.word()
    ));
    if let Some(error) = &report.error {
        out.push_str(&format!("error: {error}\n"));
    }
    if let Some(emulator) = &report.run.emulator {
        out.push_str(&format!("{}\n", crate::emulation::note(emulator)));
    }
    if report.results.is_empty() {
        return out;
    }
    let header = [
        "device",
        "precision",
        "status",
        "median ms",
        "p90 ms",
        "speedup",
        "accuracy",
        "cosine",
        "hardware",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for r in &report.results {
        let hardware = match (r.native, r.accelerated) {
            _ if r.status != Status::Ok => "-".to_owned(),
            (_, _) if r.precision == Precision::Fp32 => "native".to_owned(),
            (true, Some(false)) => "native flag, not accelerated".to_owned(),
            (true, _) => "native".to_owned(),
            (false, _) => "EMULATED".to_owned(),
        };
        let lat = r.latency_ms.as_ref();
        rows.push([
            r.device.to_string(),
            r.precision_label(),
            match r.quality {
                Some(q) if q != Quality::Clean => format!("{} ({q})", r.status.word()),
                _ => r.status.word().to_owned(),
            },
            lat.map(|l| format!("{:.3}", l.median))
                .unwrap_or_else(|| "-".into()),
            lat.map(|l| format!("{:.3}", l.p90))
                .unwrap_or_else(|| "-".into()),
            r.speedup_vs_fp32
                .map(crate::speedup::format_x)
                .unwrap_or_else(|| "-".into()),
            // Beside the speedup, so a fast precision that lost the
            // model's outputs never reads as a win.
            match r.accuracy_ok {
                Some(true) => "ok".into(),
                Some(false) => "LOST".into(),
                None => "-".into(),
            },
            r.accuracy
                .as_ref()
                .and_then(|a| a.worst.cosine)
                .map(|c| format!("{c:.6}"))
                .unwrap_or_else(|| "-".into()),
            hardware,
        ]);
    }
    out.push_str(&grid(header, &rows, false));
    out.push_str(&energy_section(report));
    if !report.side_by_side.is_empty() {
        out.push_str("\nAOTInductor package vs TorchScript, median ms:\n");
        let rows: Vec<[String; 5]> = report
            .side_by_side
            .iter()
            .map(|c| {
                [
                    c.device.to_string(),
                    c.precision.to_string(),
                    format!("{:.3}", c.aoti_median_ms),
                    format!("{:.3}", c.torchscript_median_ms),
                    crate::speedup::format_x(c.aoti_speedup_vs_torchscript),
                ]
            })
            .collect();
        let header = ["device", "precision", "aoti", "torchscript", "aoti speedup"];
        out.push_str(&grid(header, &rows, false));
        out.push('\n');
    }
    for r in report.results.iter().filter(|r| !r.reason.is_empty()) {
        out.push_str(&format!(
            "{} {}: {}\n",
            r.device,
            r.precision_label(),
            r.reason
        ));
    }
    for r in &report.results {
        if let (Some(true), Some(before), Some(now)) = (r.regression, &r.previous, &r.latency_ms) {
            out.push_str(&format!(
                "{} {}: REGRESSION: median {:.3} ms, the previous run's {:.3} ms\n",
                r.device,
                r.precision_label(),
                now.median,
                before.median_ms
            ));
        }
    }
    for r in &report.results {
        if let Some(why) = &r.accuracy_reason {
            out.push_str(&format!(
                "{} {}: accuracy LOST: {why}\n",
                r.device,
                r.precision_label()
            ));
        }
    }
    for r in &report.results {
        let (Some(q), Some(c)) = (r.quality, &r.conditions) else {
            continue;
        };
        if q != Quality::Clean {
            out.push_str(&format!(
                "{} {}: {}: {}\n",
                r.device,
                r.precision_label(),
                q.word(),
                c.why.join("; ")
            ));
        }
    }
    for r in &report.results {
        if let Some(profile) = &r.profile {
            out.push_str(&profile_lines(
                &r.device.to_string(),
                &r.precision_label(),
                profile,
            ));
        }
    }
    out
}

/// Energy per inference where a sensor was read (and its ratio to FP32's),
/// else one line per distinct reason it was not.
fn energy_section(report: &Report) -> String {
    let mut out = String::new();
    let read: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| r.energy.as_ref().map(|e| (r, e)))
        .filter(|(_, e)| e.energy_mj_per_inference.is_some())
        .collect();
    if !read.is_empty() {
        out.push_str("\nenergy per inference:\n");
        let rows: Vec<[String; 7]> = read
            .iter()
            .map(|(r, e)| {
                [
                    r.device.to_string(),
                    r.precision_label(),
                    opt(e.energy_mj_per_inference, 3),
                    e.energy_vs_fp32
                        .map(crate::speedup::format_x)
                        .unwrap_or_else(|| "-".into()),
                    opt(e.mean_power_w, 2),
                    opt(e.idle_power_w, 2),
                    e.sensor.clone(),
                ]
            })
            .collect();
        let header = [
            "device",
            "precision",
            "mJ/inference",
            "energy vs fp32",
            "mean W",
            "idle W",
            "sensor",
        ];
        out.push_str(&grid(header, &rows, false));
    }
    let mut reasons: Vec<&str> = Vec::new();
    for why in report
        .results
        .iter()
        .filter_map(|r| r.energy.as_ref()?.not_read.as_deref())
    {
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    for why in reasons {
        out.push_str(&format!("energy: {why}\n"));
    }
    out
}

/// The first operators of a result's profile, one line; the report has
/// the full list.
fn profile_lines(device: &str, precision: &str, profile: &OperatorProfile) -> String {
    const SHOWN: usize = 3;
    let listed = |ops: &[OperatorTime]| {
        ops.iter()
            .take(SHOWN)
            .map(|o| format!("{} {:.0}%", o.name, o.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "{device} {precision} operators by self time: {}\n",
        listed(&profile.operators)
    );
    match profile.float_operators.as_deref() {
        Some([]) => out.push_str(&format!(
            "{device} {precision} operators still in floating point: none\n"
        )),
        Some(float) => out.push_str(&format!(
            "{device} {precision} operators still in floating point: {}\n",
            listed(float)
        )),
        None => {}
    }
    out
}

/// The `detect --format text` output: what each device is, then a table
/// device | precision | native | accelerated | probe speedup | reason.
pub fn hardware(hw: &Hardware) -> String {
    let mut out = String::new();
    let c = &hw.cpu;
    let _ = writeln!(
        out,
        "cpu: {} ({}, {} logical CPUs)",
        c.model, c.arch, c.logical_cpus
    );
    let _ = writeln!(out, "  source: {}", c.source);
    let flags = if c.flags.is_empty() {
        "(none)".to_string()
    } else {
        c.flags.join(" ")
    };
    let _ = writeln!(out, "  flags: {flags}");
    if let Some(cap) = &c.libtorch_cpu_capability {
        let _ = writeln!(out, "  libtorch CPU capability: {cap}");
    }
    if !c.quantized_engines.is_empty() {
        let _ = writeln!(
            out,
            "  libtorch quantized engines: {}",
            c.quantized_engines.join(", ")
        );
    }
    if let Some(j) = &c.jetson {
        let _ = writeln!(out, "  jetson: {j}");
    }
    let _ = writeln!(out, "  probe: {}", c.probe);
    for device in hw.devices().into_iter().skip(1) {
        let Some(g) = hw.gpu(device) else { continue };
        // The hardware report's own name for it: the `[cuda0]` table.
        let name = device.slug();
        let _ = writeln!(
            out,
            "{name}: {} (compute capability {}, {}{})",
            g.name,
            g.compute_capability,
            g.architecture,
            if g.integrated { ", integrated" } else { "" }
        );
        if let Some(d) = &g.driver_version {
            let _ = writeln!(out, "  driver: CUDA {d}");
        }
        let _ = writeln!(out, "  probe: {}", g.probe);
    }
    for note in &hw.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out.push('\n');

    let header = [
        "device",
        "precision",
        "native",
        "accelerated",
        "probe speedup",
        "reason",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    for device in hw.devices() {
        for precision in Precision::ALL {
            let Some(v) = hw.verdict(device, precision) else {
                continue;
            };
            rows.push([
                device.slug(),
                precision.to_string(),
                yes_no(v.native).to_string(),
                v.accelerated.map_or("-", yes_no).to_string(),
                v.probe_speedup_vs_fp32
                    .map_or_else(|| "-".to_string(), |s| format!("{s:.2}x")),
                v.reason.clone(),
            ]);
        }
    }
    out.push_str(&grid(header, &rows, true));
    if c.source == crate::hardware::LIVE_CPUINFO {
        if hw.energy_sensors.is_empty() {
            let _ = writeln!(
                out,
                "energy sensors: none found (no RAPL powercap zones, no INA3221/INA238 rails, no NVML)"
            );
        }
        for s in &hw.energy_sensors {
            let state = match (&s.why_not, s.readable) {
                (_, true) => "readable".to_owned(),
                (Some(why), false) => format!("not readable: {why}"),
                (None, false) => "not readable".to_owned(),
            };
            let rails = if s.rails.is_empty() {
                String::new()
            } else {
                format!(" [{}]", s.rails.join(", "))
            };
            let _ = writeln!(
                out,
                "energy sensor: {} ({}, covers {}){rails}: {state}",
                s.name, s.kind, s.covers
            );
        }
    }
    out
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A number with `digits` decimals, or "-" when there is none.
pub fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// Lays out `header` and `rows` in columns as wide as their widest cell
/// (in characters), two spaces apart, one line each. The last column is
/// not padded and no line ends in spaces, so a long last cell (a reason)
/// does not widen every line. With `rule`, a line of dashes under the
/// header; the last column's rule is as long as its title, since that
/// column is not padded.
pub fn grid<const N: usize>(header: [&str; N], rows: &[[String; N]], rule: bool) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let mut s = s.trim_end().to_string();
        s.push('\n');
        s
    };
    let mut out = line(header);
    if rule {
        let mut dashes = widths.map(|w| "-".repeat(w));
        if let (Some(last), Some(title)) = (dashes.last_mut(), header.last()) {
            *last = "-".repeat(title.chars().count());
        }
        out.push_str(&line(dashes.each_ref().map(String::as_str)));
    }
    for row in rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}
