//! The hardware probe's result, kept between jobs. What the probe measures
//! (which formats libtorch's kernels run fast here) changes only with the
//! machine and the libtorch that runs it, so a result is reused for as long
//! as both stay: the same boot (the kernel's random boot id, new at every
//! boot: a firmware or microcode update, a changed power mode or a moved
//! card all come with a reboot) and the same libtorch version, for the same
//! device and thread count. The daemon's worker keeps the files in the drop
//! folder's state folder (`.precisiond/probe/`), which its service user can
//! write; deleting them makes the next job probe again.

use super::probe::ProbeReport;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where Linux gives this boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// What a cached probe result must match to be reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeKey {
    pub boot_id: String,
    pub libtorch: String,
    /// [`crate::devices::Device::slug`]: "cpu", "cuda0", ... (it names the file).
    pub device: String,
    pub threads: usize,
}

impl ProbeKey {
    /// The key for this boot; None where the kernel gives no boot id (then
    /// nothing is cached: without it a stale result could outlive a reboot).
    pub fn this_boot(libtorch: &str, device: &str, threads: usize) -> Option<ProbeKey> {
        let boot_id = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
        let boot_id = boot_id.trim();
        (!boot_id.is_empty()).then(|| ProbeKey {
            boot_id: boot_id.to_owned(),
            libtorch: libtorch.to_owned(),
            device: device.to_owned(),
            threads,
        })
    }

    /// The file in `dir` (the state folder's `probe/`) for this device and
    /// thread count; the boot and libtorch are checked inside it, so a
    /// stale file is replaced, not left beside the new one.
    pub fn file(&self, dir: &Path) -> PathBuf {
        let device: String = self
            .device
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        dir.join(format!("{device}.t{}.json", self.threads))
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: ProbeKey,
    report: ProbeReport,
}

/// The result cached in `dir` for `key`; None when there is none, it is
/// unreadable, or it is from another boot, libtorch, device or thread count.
pub fn load(dir: &Path, key: &ProbeKey) -> Option<ProbeReport> {
    let file = key.file(dir);
    let text = crate::fsutil::read(&file, true).ok()?;
    let entry: Entry = serde_json::from_slice(&text).ok()?;
    if entry.key != *key {
        return None;
    }
    let mut report = entry.report;
    report.reused_from = Some(file);
    Some(report)
}

/// Keeps `report` in `dir` for `key`, replacing what was there.
pub fn store(dir: &Path, key: &ProbeKey, report: &ProbeReport) -> Result<(), StoreError> {
    let file = key.file(dir);
    let entry = Entry {
        key: key.clone(),
        report: report.clone(),
    };
    let text = serde_json::to_vec_pretty(&entry)?;
    crate::fsutil::write_atomic(&file, &text).map_err(|error| StoreError::Write { file, error })
}

/// Why a probe result could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Serialise(#[from] serde_json::Error),
    #[error("cannot keep the probe result in {}: {error}", file.display())]
    Write {
        file: std::path::PathBuf,
        error: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::probe::{LaneFailure, OpTimes, PrecisionProbe};

    fn report() -> ProbeReport {
        let times = OpTimes {
            gemm_ms: 2.0,
            conv_ms: 3.0,
        };
        ProbeReport {
            device: "cpu".into(),
            threads: 2,
            fp32: times,
            fp16: Err(LaneFailure("no fp16 kernel".into())),
            bf16: Ok(PrecisionProbe {
                times,
                speedup_vs_fp32: 1.0,
                calls: 3,
            }),
            fp32_calls: 3,
            wall_ms: 412.0,
            reused_from: None,
        }
    }

    fn key() -> ProbeKey {
        ProbeKey {
            boot_id: "6f1c1a62-0d1b-4c55-9a0e-1f6f1f0b9d21".into(),
            libtorch: "2.13.0".into(),
            device: "cpu".into(),
            threads: 2,
        }
    }

    #[test]
    fn a_stored_result_is_reused_for_the_same_boot_and_libtorch_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), &key()), None);
        store(dir.path(), &key(), &report()).unwrap();
        let reused = load(dir.path(), &key()).unwrap();
        assert_eq!(reused.reused_from, Some(key().file(dir.path())));
        assert_eq!(
            ProbeReport {
                reused_from: None,
                ..reused
            },
            report()
        );

        let other_boot = ProbeKey {
            boot_id: "0b6bd0a3-2e3c-4b4e-8a55-6f1d1c2b3a40".into(),
            ..key()
        };
        let other_libtorch = ProbeKey {
            libtorch: "2.14.0".into(),
            ..key()
        };
        assert_eq!(load(dir.path(), &other_boot), None);
        assert_eq!(load(dir.path(), &other_libtorch), None);
        // Another thread count or device is another file.
        let other_threads = ProbeKey {
            threads: 4,
            ..key()
        };
        assert_ne!(other_threads.file(dir.path()), key().file(dir.path()));
        assert_eq!(load(dir.path(), &other_threads), None);

        // A new boot's result replaces the old one.
        store(dir.path(), &other_boot, &report()).unwrap();
        assert!(load(dir.path(), &other_boot).is_some());
        assert_eq!(load(dir.path(), &key()), None);
    }

    #[test]
    fn this_boot_reads_the_kernels_boot_id() {
        let key = ProbeKey::this_boot("2.13.0", "cuda0", 8).unwrap();
        assert_eq!(key.boot_id.len(), 36, "{key:?}");
        assert_eq!(key.file(Path::new("/s")), Path::new("/s/cuda0.t8.json"));
    }
}
