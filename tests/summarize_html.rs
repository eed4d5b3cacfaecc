//! `precisiond summarize --format html`: one static page with the fleet
//! table and every report's chart, rendered by a real headless Chromium
//! (Debian's `chromium`, which `make test-deps` installs): its DOM holds
//! the tables and the charts, and its screenshot is not blank.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("no chromium on PATH: `make test-deps` installs Debian's chromium package");
}

/// Headless Chromium with `args` on `page`; its stdout.
fn headless(page: &Path, args: &[&str], home: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        // A profile of its own: nothing of the user's is read or written.
        .env("HOME", home)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_html_page_renders_the_table_and_the_charts_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fleet.html");
    let out = precisiond()
        .arg("summarize")
        .arg(fixtures_dir().join("reports/fleet"))
        .args(["--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "--out writes the page, not stdout");
    let html = std::fs::read_to_string(&page).unwrap();
    let charts = html.matches("<section class=\"chart\">").count();
    assert!(charts >= 3, "{charts} charts");

    let dom = headless(&page, &["--dump-dom"], dir.path());
    assert!(dom.contains("<table id=\"results\">"), "{dom}");
    assert!(dom.contains("<table id=\"best\">"));
    // Every result row, and every chart as an SVG element in the DOM.
    let csv = precisiond()
        .arg("summarize")
        .arg(fixtures_dir().join("reports/fleet"))
        .args(["--format", "csv"])
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&csv.stdout).lines().count() - 1;
    let results = &dom[dom.find("<table id=\"results\">").unwrap()..];
    let results = &results[..results.find("</table>").unwrap()];
    assert_eq!(results.matches("<tr>").count(), rows + 1, "header and rows");
    assert!(dom.matches("<svg").count() >= charts);
    assert!(dom.contains("EMULATED"));

    let shot = dir.path().join("shot.png");
    headless(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        dir.path(),
    );
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixels = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let first = &pixels[..channels];
    let differ = pixels
        .chunks(channels)
        .filter(|p| p[..3] != first[..3])
        .count();
    let total = pixels.len() / channels;
    // Text, table borders and chart bars: far more than a blank page has.
    assert!(
        differ * 50 > total,
        "the screenshot is (nearly) blank: {differ} of {total} pixels differ from the first"
    );
}
