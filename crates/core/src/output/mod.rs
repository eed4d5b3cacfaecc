//! What precisiond writes for people and scripts to read, one file per
//! destination, so that a change to one format never touches another.

pub mod svg; // the chart of a report, `NAME.pt.report.svg` beside the TOML report
pub mod table; // the terminal tables of `precisiond run` and `precisiond detect`
pub mod toml; // the TOML report written beside each model

/// Writes `report` to `path` (atomically) and, with `chart`, its chart
/// beside it (`svg::svg_path`). A chart that cannot be drawn or written is
/// logged, never a lost report: the TOML is what scripts read.
pub fn write_report(
    report: &crate::report::Report,
    path: &std::path::Path,
    chart: bool,
) -> std::io::Result<()> {
    toml::write(report, path)?;
    if chart {
        let svg_path = svg::svg_path(path);
        match svg::report_svg(report) {
            Ok(text) => {
                if let Err(e) = crate::fsutil::write_atomic(&svg_path, text.as_bytes()) {
                    log::warn!("cannot write the chart {}: {e}", svg_path.display());
                }
            }
            Err(e) => log::warn!("cannot draw the chart of {}: {e}", path.display()),
        }
    }
    Ok(())
}
