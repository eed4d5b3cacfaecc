//! The documentation cannot go stale without a test failing: every doc a
//! source file, script or doc names exists (with the section it names), the
//! module map in docs/architecture.md names every module file of the three
//! crates and nothing else, and the README stays short enough to be read.
//! Reads the repository's files only; no binary is run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The longest README this project accepts (issue 21: "aim under 350").
const README_MAX_LINES: usize = 350;

/// Every text file of the repository, relative to its root: build outputs,
/// git's folder and files that are not UTF-8 (fixture models) left out, and
/// this file, whose examples of what it looks for are not references.
fn text_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                if name != "target" && name != ".git" {
                    walk(&path, out);
                }
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter(|p| {
            fs::metadata(p)
                .map(|m| m.len() < 4_000_000)
                .unwrap_or(false)
        })
        .filter_map(|p| {
            let rel = p.strip_prefix(root()).unwrap().to_path_buf();
            if rel == Path::new("tests/docs.rs") {
                return None;
            }
            let text = fs::read_to_string(&p).ok()?;
            Some((rel, text))
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The headings of a Markdown file (outside code blocks), as written.
fn headings(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(line.trim_start_matches('#').trim().replace('`', ""));
        }
    }
    out
}

/// The anchors GitHub gives a Markdown file's headings (a repeated heading
/// gets `-1`, `-2`, ...).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for heading in headings(markdown) {
        let base = slug(&heading);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Checks that `target` (a path from the repository root, with an optional
/// `#anchor`) exists, and that the anchor is one of its headings.
fn check_target(target: &str, named_in: &Path, problems: &mut Vec<String>) {
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let file = root().join(path);
    if !file.exists() {
        problems.push(format!(
            "{}: names {target}, which does not exist",
            named_in.display()
        ));
        return;
    }
    if let Some(anchor) = anchor {
        let text = fs::read_to_string(&file).unwrap();
        if !anchors(&text).contains(anchor) {
            problems.push(format!(
                "{}: names {target}, but {path} has no heading with that anchor",
                named_in.display()
            ));
        }
    }
}

/// Paths under docs/ ending in .md (and README.md), with an optional
/// anchor, wherever a file writes them: comments, messages, scripts, docs.
fn doc_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["docs/", "README.md#"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(is_path_char) {
                continue;
            }
            let rest = &text[at..];
            let path_len = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
            let path = rest[..path_len].trim_end_matches('.');
            if !path.ends_with(".md") && !path.starts_with("README.md") {
                continue;
            }
            let mut target = path.to_owned();
            if path == "README.md" || rest[path.len()..].starts_with('#') {
                let anchor_text = &rest[path.len()..];
                if let Some(anchor) = anchor_text.strip_prefix('#') {
                    let len = anchor
                        .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                        .unwrap_or(anchor.len());
                    target = format!("{path}#{}", &anchor[..len]);
                }
            }
            out.push(target);
        }
    }
    out
}

#[test]
fn every_doc_a_file_names_exists() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in text_files() {
        for target in doc_paths(&text) {
            checked += 1;
            check_target(&target, &path, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 5,
        "only {checked} doc paths found: is the scan broken?"
    );
}

/// Text as a reader sees it: Rust's string continuations (`\` at a line's
/// end) and escaped quotes undone, and a comment wrapped over lines joined
/// into one line.
fn unwrapped(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(cut) = line.strip_suffix('\\') {
            out.push_str(cut);
            if let Some(next) = lines.peek_mut() {
                *next = next.trim_start();
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let out = out.replace("\\\"", "\"");
    // A comment's next line continues its sentence.
    let mut joined = String::new();
    for line in out.lines() {
        let body = line.trim_start();
        let body = ["//!", "///", "//", "# ", "#", "* "]
            .iter()
            .find_map(|p| body.strip_prefix(p))
            .unwrap_or(body);
        joined.push_str(body.trim());
        joined.push(' ');
    }
    joined
}

/// The section titles a text names as `the README's "Title"`.
fn readme_sections_named(text: &str) -> Vec<String> {
    let text = unwrapped(text);
    let mut out = Vec::new();
    let marker = "README's \"";
    let mut from = 0;
    while let Some(i) = text[from..].find(marker) {
        let start = from + i + marker.len();
        let Some(len) = text[start..].find('"') else {
            break;
        };
        out.push(
            text[start..start + len]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        from = start + len;
    }
    out
}

#[test]
fn every_readme_section_a_file_names_exists() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let titles = headings(&readme);
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in text_files() {
        for title in readme_sections_named(&text) {
            checked += 1;
            // "torch.export models" names the section that begins so.
            if !titles.iter().any(|t| t.starts_with(&title)) {
                problems.push(format!(
                    "{}: names the README's \"{title}\", which is no section of README.md",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Error messages point users at sections (energy permissions, ARM boards).
    assert!(
        checked >= 3,
        "only {checked} README sections named: is the scan broken?"
    );
}

/// Relative links in the README and docs/: `[text](target)`.
fn markdown_links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut from = 0;
        while let Some(i) = line[from..].find("](") {
            let start = from + i + 2;
            let Some(len) = line[start..].find(')') else {
                break;
            };
            out.push(line[start..start + len].to_owned());
            from = start + len;
        }
    }
    out
}

#[test]
fn links_in_the_readme_and_docs_resolve() {
    let mut files = vec![PathBuf::from("README.md")];
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(root().join(file)).unwrap();
        for link in markdown_links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let target = if let Some(anchor) = link.strip_prefix('#') {
                format!("{}#{anchor}", file.display())
            } else {
                let dir = file.parent().unwrap_or(Path::new(""));
                let joined = dir.join(&link);
                // docs/../README.md is README.md.
                let mut parts: Vec<String> = Vec::new();
                for part in joined.to_string_lossy().split('/') {
                    match part {
                        ".." => {
                            parts.pop();
                        }
                        "." | "" => {}
                        p => parts.push(p.to_owned()),
                    }
                }
                parts.join("/")
            };
            check_target(&target, file, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_design_notes_are_named_by_their_path() {
    // They were once outside the repository and named as "design.md" alone.
    let mut problems = Vec::new();
    for (path, text) in text_files() {
        if path.starts_with("docs") {
            continue; // docs/ links to its neighbours by their file names
        }
        for (i, _) in text.match_indices("design.md") {
            if !text[..i].ends_with("docs/") {
                let line = text[..i].lines().count();
                problems.push(format!(
                    "{}:{line}: names design.md without its folder (docs/design.md)",
                    path.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `.rs` files under `dir`, relative to it.
fn module_files(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap();
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The modules a table of docs/architecture.md names: the section whose
/// heading names `folder` in backticks, the first cell of each row.
fn map_rows(map: &str, folder: &str) -> Option<Vec<String>> {
    let tag = format!("(`{folder}`)");
    let mut lines = map
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.contains(&tag)));
    lines.next()?;
    let rows = lines
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(cell, _)| cell.to_owned())
        .collect();
    Some(rows)
}

/// Every crate's source folder: the root package, the worker, crates/*.
fn source_folders() -> Vec<String> {
    let mut out = vec!["src/".to_owned(), "worker/src/".to_owned()];
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let path = entry.unwrap().path();
        if path.join("src").is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push(format!("crates/{name}/src/"));
        }
    }
    out
}

#[test]
fn the_module_map_names_every_module_file_and_no_other() {
    let map = fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut problems = Vec::new();
    for folder in source_folders() {
        let Some(rows) = map_rows(&map, &folder) else {
            problems.push(format!(
                "docs/architecture.md has no table for {folder} (a heading with (`{folder}`))"
            ));
            continue;
        };
        let files = module_files(&root().join(&folder));
        let mut named = BTreeSet::new();
        for row in rows {
            if !named.insert(row.clone()) {
                problems.push(format!("{folder}{row} is named twice in the module map"));
            }
        }
        for missing in files.difference(&named) {
            problems.push(format!(
                "{folder}{missing} exists but the module map does not name it: add a row"
            ));
        }
        for gone in named.difference(&files) {
            problems.push(format!(
                "the module map names {folder}{gone}, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_stays_under_350_lines() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines: it is for users (install, run, read a report, operate \
         the daemon); move internals to docs/"
    );
}

#[test]
fn the_checks_themselves_see_what_they_look_for() {
    assert_eq!(
        slug("torch.export models: AOTInductor packages (`.pt2`)"),
        "torchexport-models-aotinductor-packages-pt2"
    );
    assert_eq!(
        doc_paths("see docs/int8.md#the-passes, and README.md#install."),
        ["docs/int8.md#the-passes", "README.md#install"]
    );
    assert!(doc_paths("not ../xdocs/a.md nor docs/ alone").is_empty());
    let message = "or JetPack's own; see the README's \\\"ARM \\\n         boards\\\" section";
    assert_eq!(readme_sections_named(message), ["ARM boards"]);
    let comment = "// see the README's \"Energy per\n// inference\" for why";
    assert_eq!(readme_sections_named(comment), ["Energy per inference"]);
    assert_eq!(
        markdown_links("[a](x.md#y) and [b](#z)\n```\n[c](no)\n```"),
        ["x.md#y", "#z"]
    );
}
