//! Reading trtexec's `--exportTimes` trace: the per-inference times that
//! every TensorRT result is summarised from (never the console summary,
//! whose wording changes between versions).
//!
//! The trace is a JSON array of objects of numbers, written by
//! `exportJSONTrace` (samples/common/sampleReporting.cpp) with C++ streams,
//! so a value may read `inf`, `-inf`, `nan` or `-nan`, which JSON does not
//! allow. Those are accepted (and reported by [`samples_ms`]) rather than
//! failing the whole file, so the reason names the bad inference.

use super::TrtVersion;
use serde_json::Value;
use std::collections::BTreeMap;

/// One inference of a `--exportTimes` trace: its keys (startComputeMs,
/// computeMs, latencyMs, …) and values in milliseconds.
pub type TraceEntry = BTreeMap<String, f64>;

/// Parses a `--exportTimes` file; non-finite values become `inf` or `NaN`
/// (see the module comment).
pub fn parse_export_times(text: &str) -> Result<Vec<TraceEntry>, TraceError> {
    let raw: Vec<BTreeMap<String, Value>> =
        serde_json::from_str(&quote_bare_words(text)).map_err(|e| describe(&e))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .into_iter()
                .map(|(key, value)| match number(&value) {
                    Some(ms) => Ok((key, ms)),
                    None => Err(TraceError::NotANumber {
                        index: i,
                        key,
                        value,
                    }),
                })
                .collect()
        })
        .collect()
}

/// A trace value in milliseconds: a JSON number, or one of the C++
/// spellings of a non-finite value that [`quote_bare_words`] made a string.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            // "-nan" is what glibc prints for a negative NaN; Rust's parser
            // takes "nan" only.
            let parsed = if s.trim_start_matches('-').eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                s.parse::<f64>().ok()?
            };
            // Only the spellings JSON lacks: a quoted finite number is not
            // something trtexec writes.
            (!parsed.is_finite()).then_some(parsed)
        }
        _ => None,
    }
}

/// Puts quotes around every bare word outside strings that is not a JSON
/// number or literal (`inf`, `-nan`, but also garbage such as `fast`), so
/// serde_json reads the file and [`number`] says which value is wrong,
/// instead of serde_json stopping at the first C++ spelling. No line
/// breaks are added, so serde_json's line numbers stay those of the file.
fn quote_bare_words(text: &str) -> String {
    let is_delimiter = |c: char| c.is_whitespace() || "[]{}:,\"".contains(c);
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let end = if c == '"' {
            // A string, copied as it is: what looks like a word inside it
            // (a key such as "nanMs") is not one.
            let mut escaped = false;
            let close = rest.char_indices().skip(1).find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            });
            let end = close.map_or(rest.len(), |(i, _)| i + 1);
            out.push_str(&rest[..end]);
            end
        } else if is_delimiter(c) {
            out.push(c);
            c.len_utf8()
        } else {
            let end = rest.find(is_delimiter).unwrap_or(rest.len());
            let word = &rest[..end];
            let digits = word.strip_prefix('-').unwrap_or(word);
            if digits.starts_with(|c: char| c.is_ascii_digit())
                || matches!(word, "true" | "false" | "null")
            {
                out.push_str(word);
            } else {
                out.push_str(&Value::from(word).to_string());
            }
            end
        };
        rest = &rest[end..];
    }
    out
}

/// serde_json's error as a reason: where, and whether the file looks cut
/// short (a run killed while writing it) or is not a trace at all.
fn describe(e: &serde_json::Error) -> TraceError {
    let full = e.to_string();
    // Columns are left out: quoting a bare word shifts the rest of its line.
    let what = full
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&full)
        .to_owned();
    let line = e.line();
    if e.is_eof() {
        TraceError::Truncated { line }
    } else if e.is_data() {
        TraceError::NotATrace { line, what }
    } else {
        TraceError::NotJson { line, what }
    }
}

/// Why a `--exportTimes` trace gives no times.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("it ends at line {line} before the trace does (is it truncated?)")]
    Truncated { line: usize },
    #[error("it is not a trace (a JSON array of objects) at line {line}: {what}")]
    NotATrace { line: usize, what: String },
    #[error("it is not valid JSON at line {line}: {what}")]
    NotJson { line: usize, what: String },
    #[error("inference {index}: {key} is {value}, not a number")]
    NotANumber {
        index: usize,
        key: String,
        value: Value,
    },
    #[error("inference {0} of the trace has no computeMs or latencyMs")]
    NoTime(usize),
    #[error("inference {index} of the trace has computeMs = {ms}")]
    BadTime { index: usize, ms: f64 },
    #[error("the trace holds no timed inference")]
    Empty,
}

/// The per-inference times (ms) of a trace: `computeMs` (else `latencyMs`)
/// of each entry. For versions before 8.5.1 the trace still holds the
/// warm-up, which is dropped here the way trtexec drops it from its own
/// summary: entries whose compute started before `warmup_ms`.
pub fn samples_ms(
    entries: &[TraceEntry],
    version: TrtVersion,
    warmup_ms: f64,
) -> Result<Vec<f64>, TraceError> {
    let mut samples = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if !version.export_skips_warmup() && e.get("startComputeMs").is_some_and(|&s| s < warmup_ms)
        {
            continue;
        }
        let Some(&ms) = e.get("computeMs").or_else(|| e.get("latencyMs")) else {
            return Err(TraceError::NoTime(i));
        };
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(TraceError::BadTime { index: i, ms });
        }
        samples.push(ms);
    }
    if samples.is_empty() {
        return Err(TraceError::Empty);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpp_stream_spellings_are_taken_and_garbage_rejected() {
        let e = parse_export_times("[ { \"computeMs\" : inf, \"latencyMs\" : -nan }\n]").unwrap();
        assert!(e[0]["computeMs"].is_infinite());
        assert!(e[0]["latencyMs"].is_nan());
        let e = samples_ms(&e, TrtVersion::new(10, 0, 0), 0.0).unwrap_err();
        assert!(matches!(e, TraceError::BadTime { index: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("inf"), "{e}");
        assert_eq!(parse_export_times("[\n]\n").unwrap().len(), 0);
        let e = parse_export_times("[ { \"computeMs\" : 1.0 }").unwrap_err();
        assert_eq!(e, TraceError::Truncated { line: 1 });
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = parse_export_times("[ { \"computeMs\" : fast } ]").unwrap_err();
        assert!(matches!(e, TraceError::NotANumber { .. }), "{e:?}");
        assert!(e.to_string().contains("fast"), "{e}");
        assert!(matches!(
            parse_export_times("{}"),
            Err(TraceError::NotATrace { .. })
        ));
        assert_eq!(
            samples_ms(&[], TrtVersion::new(10, 0, 0), 0.0),
            Err(TraceError::Empty)
        );
        // Words inside strings are left alone; negative numbers and
        // exponents are numbers.
        let e = parse_export_times("[ { \"nan inf\" : -1.5e-3 } ]").unwrap();
        assert_eq!(e[0]["nan inf"], -1.5e-3);
    }
}
