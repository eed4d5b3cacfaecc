//! Paths in the quantization job file as their raw bytes (a TOML array of
//! integers), not as strings: a Unix path need not be UTF-8, and a model
//! named `m\xff.pt` must quantize like any other. Use with
//! `#[serde(with = "crate::path_bytes")]`, or `crate::path_bytes::option`
//! (plus `default`) for an `Option<PathBuf>`.

use serde::{Deserialize, Deserializer, Serializer};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(path.as_os_str().as_bytes())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
    let bytes = Vec::<u8>::deserialize(deserializer)?;
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        path: &Option<PathBuf>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match path {
            Some(path) => serializer.serialize_some(path.as_os_str().as_bytes()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let bytes = Option::<Vec<u8>>::deserialize(deserializer)?;
        Ok(bytes.map(|b| PathBuf::from(OsString::from_vec(b))))
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
        ] {
            let text = toml::to_string(&paths).unwrap();
            assert_eq!(toml::from_str::<Paths>(&text).unwrap(), paths, "{text}");
        }
    }
}
