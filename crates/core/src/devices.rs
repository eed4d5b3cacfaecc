//! Which devices a run measures: `--devices auto|cpu|cuda:0,...` on the
//! command line, `devices = [...]` in a model's settings or the daemon's
//! config.
//!
//! "auto" means the CPU plus every CUDA device libtorch can use. The list is
//! resolved by the worker, which alone knows what libtorch sees; this module
//! only parses and resolves, so it is testable without libtorch.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One entry of a device list as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceRequest {
    /// The CPU and every CUDA device libtorch sees.
    Auto,
    Cpu,
    /// Every CUDA device libtorch sees (`cuda` without an index).
    AllCuda,
    Cuda(usize),
}

/// A device that is measured. Its one spelling, in reports, on the command
/// line, in metric labels and in notes, is PyTorch's: "cpu", "cuda:0"
/// (`Display`, serde). Where a colon cannot go (TOML table names of the
/// hardware report, file names), [`Device::slug`] gives "cuda0".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The name in reports and on the command line: "cpu", "cuda:0".
    pub fn name(self) -> String {
        self.to_string()
    }

    /// The name without a colon: "cpu", "cuda0". It keys this device's
    /// table in the hardware report (`[cuda0]`), its probe cache file and
    /// its energy sensor's name.
    pub fn slug(self) -> String {
        match self {
            Device::Cpu => "cpu".to_owned(),
            Device::Cuda(i) => format!("cuda{i}"),
        }
    }

    /// The device a [`Device::slug`] names ("cpu", "cuda0"), if any.
    pub fn from_slug(slug: &str) -> Option<Device> {
        match slug {
            "cpu" => Some(Device::Cpu),
            other => other
                .strip_prefix("cuda")
                .filter(|i| i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A device name that is not "cpu" or "cuda:N".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}': expected cpu or cuda:N (e.g. cuda:0)")]
pub struct UnknownDevice(pub String);

impl FromStr for Device {
    type Err = UnknownDevice;

    /// Exactly the spelling `Display` writes: a report's `device`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            other => other
                .strip_prefix("cuda:")
                .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| UnknownDevice(s.to_owned())),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::AllCuda => f.write_str("cuda"),
            DeviceRequest::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let bad =
            || format!("unknown device '{s}': expected auto, cpu, cuda or cuda:N (e.g. cuda:0)");
        match s.as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" | "gpu" => Ok(DeviceRequest::AllCuda),
            other => {
                // cuda:0 (PyTorch's spelling) and cuda0 (the hardware report's).
                let index = other
                    .strip_prefix("cuda:")
                    .or_else(|| other.strip_prefix("cuda"))
                    .ok_or_else(bad)?;
                index
                    .parse::<usize>()
                    .map(DeviceRequest::Cuda)
                    .map_err(|_| bad())
            }
        }
    }
}

impl Serialize for DeviceRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DeviceRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a comma-separated list such as `cpu,cuda:0`, keeping the order
/// and dropping repeats.
pub fn parse_list(list: &str) -> Result<Vec<DeviceRequest>, String> {
    crate::precision::parse_comma_list(list, "the device list is empty: give auto, cpu or cuda:N")
}

/// A device list resolved against what libtorch sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Devices to measure, CPU first, then CUDA devices in index order.
    pub devices: Vec<Device>,
    /// CUDA devices asked for by index that libtorch does not see; each is
    /// reported with `unsupported` results rather than silently dropped.
    pub missing: Vec<Device>,
}

/// Resolves `requests` when libtorch sees `cuda_count` CUDA devices. "auto"
/// and "cuda" without an index take whatever there is (nothing, without a
/// GPU); an explicit `cuda:N` that does not exist is listed in `missing`.
pub fn resolve(requests: &[DeviceRequest], cuda_count: usize) -> Resolved {
    let mut devices = Vec::new();
    let mut missing = Vec::new();
    let all_cuda = || (0..cuda_count).map(Device::Cuda);
    for request in requests {
        match request {
            DeviceRequest::Auto => {
                devices.push(Device::Cpu);
                devices.extend(all_cuda());
            }
            DeviceRequest::Cpu => devices.push(Device::Cpu),
            DeviceRequest::AllCuda => devices.extend(all_cuda()),
            DeviceRequest::Cuda(i) if *i < cuda_count => devices.push(Device::Cuda(*i)),
            DeviceRequest::Cuda(i) => missing.push(Device::Cuda(*i)),
        }
    }
    devices.sort();
    devices.dedup();
    missing.sort();
    missing.dedup();
    Resolved { devices, missing }
}

/// The list used when neither the command line nor the settings name one.
pub fn default_requests() -> Vec<DeviceRequest> {
    vec![DeviceRequest::Auto]
}

/// The command-line form of a list: `cpu,cuda:0`.
pub fn list_to_string(list: &[DeviceRequest]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_in_order_without_repeats() {
        assert_eq!(
            parse_list("cuda:1, cpu,CUDA0,cpu").unwrap(),
            vec![
                DeviceRequest::Cuda(1),
                DeviceRequest::Cpu,
                DeviceRequest::Cuda(0)
            ]
        );
        assert_eq!(parse_list("auto").unwrap(), vec![DeviceRequest::Auto]);
        assert_eq!(parse_list("cuda").unwrap(), vec![DeviceRequest::AllCuda]);
        for bad in ["tpu", "cuda:x", "cuda:-1", "cuda:"] {
            let e = parse_list(bad).unwrap_err();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn auto_without_a_gpu_is_the_cpu_alone() {
        let r = resolve(&[DeviceRequest::Auto], 0);
        assert_eq!(r.devices, vec![Device::Cpu]);
        assert!(r.missing.is_empty());
        let r = resolve(&[DeviceRequest::AllCuda], 0);
        assert!(r.devices.is_empty() && r.missing.is_empty());
    }

    #[test]
    fn auto_with_gpus_takes_all_of_them_cpu_first() {
        let r = resolve(&[DeviceRequest::Cuda(1), DeviceRequest::Auto], 2);
        assert_eq!(
            r.devices,
            vec![Device::Cpu, Device::Cuda(0), Device::Cuda(1)]
        );
    }

    #[test]
    fn an_explicit_device_that_does_not_exist_is_missing_not_dropped() {
        let r = resolve(
            &[
                DeviceRequest::Cpu,
                DeviceRequest::Cuda(0),
                DeviceRequest::Cuda(3),
            ],
            1,
        );
        assert_eq!(r.devices, vec![Device::Cpu, Device::Cuda(0)]);
        assert_eq!(r.missing, vec![Device::Cuda(3)]);
    }

    #[test]
    fn names_follow_pytorch_and_the_hardware_report() {
        assert_eq!(Device::Cuda(2).name(), "cuda:2");
        assert_eq!(Device::Cuda(2).slug(), "cuda2");
        assert_eq!(Device::Cpu.slug(), "cpu");
        assert_eq!(Device::from_slug("cuda2"), Some(Device::Cuda(2)));
        assert_eq!(Device::from_slug("cpu"), Some(Device::Cpu));
        for bad in ["cuda", "cuda:2", "gpu0", "cuda-1"] {
            assert_eq!(Device::from_slug(bad), None, "{bad}");
        }
        let list = parse_list("cpu,cuda:0").unwrap();
        assert_eq!(list_to_string(&list), "cpu,cuda:0");
    }

    #[test]
    fn a_device_has_one_spelling_in_reports() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct R {
            device: Device,
        }
        for (device, text) in [
            (Device::Cpu, "cpu"),
            (Device::Cuda(0), "cuda:0"),
            (Device::Cuda(11), "cuda:11"),
        ] {
            let toml = toml::to_string(&R { device }).unwrap();
            assert_eq!(toml, format!("device = \"{text}\"\n"));
            assert_eq!(toml::from_str::<R>(&toml).unwrap(), R { device });
            assert_eq!(device.to_string(), text);
            assert_eq!(text.parse::<Device>(), Ok(device));
        }
        for bad in ["cuda0", "cuda:", "cuda:x", "CPU", "gpu", ""] {
            assert!(bad.parse::<Device>().is_err(), "{bad}");
        }
        assert!(toml::from_str::<R>("device = \"tpu\"").is_err());
    }

    #[test]
    fn settings_lists_deserialise_from_strings() {
        #[derive(Deserialize)]
        struct S {
            devices: Vec<DeviceRequest>,
        }
        let s: S = toml::from_str("devices = [\"cpu\", \"cuda:0\"]").unwrap();
        assert_eq!(s.devices, vec![DeviceRequest::Cpu, DeviceRequest::Cuda(0)]);
        let e = toml::from_str::<S>("devices = [\"npu\"]")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("npu"), "{e}");
    }
}
