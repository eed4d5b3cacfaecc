//! The number formats precisiond measures, and how each is prepared.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 4] = [
        Precision::Fp32,
        Precision::Fp16,
        Precision::Bf16,
        Precision::Int8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "float" => Ok(Precision::Fp32),
            "fp16" | "float16" | "half" => Ok(Precision::Fp16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "qint8" => Ok(Precision::Int8),
            other => Err(format!(
                "unknown precision '{other}': expected fp32, fp16, bf16 or int8"
            )),
        }
    }
}

/// Parses a comma-separated list such as `fp32,bf16`, keeping the given
/// order and dropping repeats.
pub fn parse_list(list: &str) -> Result<Vec<Precision>, String> {
    parse_comma_list(
        list,
        "the precision list is empty: give at least one of fp32, fp16, bf16, int8",
    )
}

/// A comma-separated list of `T` in the given order, without repeats;
/// `empty` is the error for a list with no items.
pub fn parse_comma_list<T>(list: &str, empty: &str) -> Result<Vec<T>, String>
where
    T: FromStr<Err = String> + PartialEq,
{
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        let value: T = item.parse()?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    if out.is_empty() {
        return Err(empty.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_in_order_without_repeats() {
        assert_eq!(
            parse_list("bf16, fp32,bf16").unwrap(),
            vec![Precision::Bf16, Precision::Fp32]
        );
        assert!(parse_list("fp8").unwrap_err().contains("fp8"));
        assert!(parse_list(" , ").is_err());
    }
}
