//! Paths in the files the processes hand each other (the job spec, the
//! quantization job): a Unix path need not be UTF-8, and a model named
//! `m\xff.pt` must be measured like any other. A path is written as a
//! string when it is UTF-8 (the file stays readable) and as its raw bytes
//! (a TOML array of integers) otherwise; either form is read. Use with
//! `#[serde(with = "precisiond_core::path_bytes")]`, or
//! `precisiond_core::path_bytes::option` (plus `default`) for an
//! `Option<PathBuf>`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Serializer;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    match path.to_str() {
        Some(text) => serializer.serialize_str(text),
        None => serializer.collect_seq(path.as_os_str().as_bytes()),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    deserializer.deserialize_any(PathVisitor)
}

struct PathVisitor;

impl<'de> Visitor<'de> for PathVisitor {
    type Value = PathBuf;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a path: a string, or an array of its bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PathBuf, E> {
        Ok(PathBuf::from(text))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<PathBuf, E> {
        Ok(PathBuf::from(OsString::from_vec(bytes.to_vec())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PathBuf, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(PathBuf::from(OsString::from_vec(bytes)))
    }
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        path: &Option<PathBuf>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        struct Some_<'a>(&'a Path);
        impl serde::Serialize for Some_<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, serializer)
            }
        }
        match path {
            Some(path) => serializer.serialize_some(&Some_(path)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        struct OptionVisitor;
        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<PathBuf>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path: a string, or an array of its bytes")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
        deserializer.deserialize_option(OptionVisitor)
    }
}

/// A list of paths, each written as [`serialize`] writes one.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a Path);
        impl serde::Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::serialize(self.0, serializer)
            }
        }
        serializer.collect_seq(paths.iter().map(|p| One(p)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PathBuf>, D::Error> {
        struct One(PathBuf);
        impl<'de> serde::Deserialize<'de> for One {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(One)
            }
        }
        let all: Vec<One> = serde::Deserialize::deserialize(deserializer)?;
        Ok(all.into_iter().map(|One(p)| p).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Paths {
        #[serde(with = "super")]
        plain: PathBuf,
        #[serde(default, with = "super::option")]
        maybe: Option<PathBuf>,
    }

    #[test]
    fn non_utf8_paths_round_trip_through_toml() {
        let odd = PathBuf::from(OsStr::from_bytes(b"/tmp/d\xff/m\xfe.pt"));
        for paths in [
            Paths {
                plain: odd.clone(),
                maybe: Some(odd.clone()),
            },
            Paths {
                plain: odd.clone(),
                maybe: None,
            },
            Paths {
                plain: PathBuf::from("/d/m.pt"),
                maybe: Some(PathBuf::from("/d/n.pt")),
            },
        ] {
            let text = toml::to_string(&paths).unwrap();
            assert_eq!(toml::from_str::<Paths>(&text).unwrap(), paths, "{text}");
        }
    }

    #[test]
    fn a_utf8_path_is_written_as_a_string() {
        let paths = Paths {
            plain: PathBuf::from("/d/m.pt"),
            maybe: None,
        };
        let text = toml::to_string(&paths).unwrap();
        assert_eq!(text.trim(), "plain = \"/d/m.pt\"");
    }
}
