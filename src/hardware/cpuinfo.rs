//! Parsing of `/proc/cpuinfo` text (x86, aarch64 and 32-bit ARM kernels).
//!
//! Pure functions only: the caller reads the file (the live one or a saved
//! capture given with `--cpuinfo`), so every capture in
//! `tests/fixtures/cpuinfo/` can be checked on any machine.

use std::collections::BTreeSet;
use std::fmt;

/// Instruction-set architecture, decided from the content of the file (never
/// from the machine the parser runs on: a saved capture describes another one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    /// 32-bit x86 (no `lm` flag).
    I686,
    Aarch64,
    /// 32-bit ARM; the value is the `CPU architecture` line (7 for ARMv7,
    /// 8 for an ARMv8 core running a 32-bit kernel).
    Arm32(u32),
    Unknown,
}

impl Arch {
    /// The name `uname -m` would print for this architecture.
    pub fn name(&self) -> String {
        match self {
            Arch::X86_64 => "x86_64".to_string(),
            Arch::I686 => "i686".to_string(),
            Arch::Aarch64 => "aarch64".to_string(),
            Arch::Arm32(v) => format!("armv{v}l"),
            Arch::Unknown => "unknown".to_string(),
        }
    }

    pub fn is_x86(&self) -> bool {
        matches!(self, Arch::X86_64 | Arch::I686)
    }

    pub fn is_arm32(&self) -> bool {
        matches!(self, Arch::Arm32(_))
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub arch: Arch,
    /// A readable name: x86 `model name`; on ARM the core names decoded from
    /// `CPU implementer`/`CPU part`, prefixed by the `Hardware` line when
    /// there is one.
    pub model: String,
    /// x86 `flags` or ARM `Features` that *every* logical CPU lists. On a
    /// big.LITTLE SoC a thread may run on any core, so a feature only some
    /// cores have cannot be counted on.
    pub flags: BTreeSet<String>,
    /// Number of `processor : N` entries.
    pub logical_cpus: usize,
    /// ARM `Hardware` line (board/SoC name on older kernels), if any.
    pub hardware: Option<String>,
    /// Distinct ARM core names in order of appearance ("Cortex-A57", ...).
    pub cores: Vec<String>,
}

impl CpuInfo {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// The flags among `names` that this CPU has, in the order of `names`.
    pub fn present<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names.iter().copied().filter(|n| self.has(n)).collect()
    }
}

/// Flags that decide a precision verdict or give context to one, in the
/// order they are reported (`cpu.flags`). Only these are reported: the full
/// x86 list has over a hundred entries that say nothing about precisions.
pub const RELEVANT_X86_FLAGS: &[&str] = &[
    "avx512_bf16",
    "amx_bf16",
    "avx512_fp16",
    "amx_fp16",
    "avx_ne_convert",
    "f16c",
    "amx_int8",
    "amx_tile",
    "avx512_vnni",
    "avx_vnni",
    "avx_vnni_int8",
    "avx512f",
    "avx2",
    "fma",
    "avx",
    "sse4_2",
];

/// See [`RELEVANT_X86_FLAGS`]; both the aarch64 and the 32-bit ARM names.
pub const RELEVANT_ARM_FLAGS: &[&str] = &[
    "fp", "asimd", "fphp", "asimdhp", "asimdfhm", "bf16", "asimddp", "i8mm", "sve", "sve2",
    "svebf16", "svei8mm", "sme", "neon", "vfpv4", "vfpv3", "half",
];

/// Parses the text of a `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut x86_flags: Option<BTreeSet<String>> = None;
    let mut arm_features: Option<BTreeSet<String>> = None;
    let mut model_name: Option<String> = None;
    let mut arm_processor: Option<String> = None;
    let mut hardware: Option<String> = None;
    let mut cpu_architecture: Option<String> = None;
    let mut implementer: Option<String> = None;
    let mut cores: Vec<String> = Vec::new();
    let mut logical_cpus = 0;

    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        // Keys are padded with tabs on most kernels and with spaces in some
        // captures (the Raspberry Pi one): trim both sides.
        let key = key.trim();
        let value = value.trim();
        match key {
            "processor" if value.parse::<u32>().is_ok() => logical_cpus += 1,
            // Old 32-bit ARM kernels: "Processor : ARMv7 Processor rev 4 (v7l)".
            "Processor" => {
                arm_processor.get_or_insert_with(|| value.to_string());
            }
            "flags" => intersect(&mut x86_flags, value),
            "Features" => intersect(&mut arm_features, value),
            "model name" => {
                model_name.get_or_insert_with(|| value.to_string());
            }
            "Hardware" if !value.is_empty() => {
                hardware.get_or_insert_with(|| value.to_string());
            }
            "CPU architecture" => {
                cpu_architecture.get_or_insert_with(|| value.to_string());
            }
            "CPU implementer" => implementer = Some(value.to_string()),
            "CPU part" => {
                let name = arm_core_name(implementer.as_deref().unwrap_or(""), value);
                if !cores.contains(&name) {
                    cores.push(name);
                }
            }
            _ => {}
        }
    }

    let (arch, flags) = if let Some(flags) = x86_flags {
        let arch = if flags.contains("lm") {
            Arch::X86_64
        } else {
            Arch::I686
        };
        (arch, flags)
    } else if let Some(features) = arm_features {
        let arch = arm_arch(
            &features,
            cpu_architecture.as_deref(),
            model_name.as_deref().or(arm_processor.as_deref()),
        );
        (arch, features)
    } else {
        (Arch::Unknown, BTreeSet::new())
    };

    let model = if arch.is_x86() {
        model_name.unwrap_or_else(|| "unknown x86 CPU".to_string())
    } else {
        let primary = if !cores.is_empty() {
            let known: Vec<&str> = cores.iter().map(String::as_str).collect();
            let prefix = if cores
                .iter()
                .all(|c| c.starts_with("Cortex") || c.starts_with("Neoverse"))
            {
                "ARM "
            } else {
                ""
            };
            format!("{prefix}{}", known.join(" + "))
        } else {
            model_name
                .or(arm_processor)
                .unwrap_or_else(|| "unknown CPU".to_string())
        };
        match &hardware {
            Some(hw) => format!("{hw}: {primary}"),
            None => primary,
        }
    };

    CpuInfo {
        arch,
        model,
        flags,
        logical_cpus,
        hardware,
        cores,
    }
}

fn intersect(acc: &mut Option<BTreeSet<String>>, value: &str) {
    let set: BTreeSet<String> = value.split_whitespace().map(str::to_string).collect();
    *acc = Some(match acc.take() {
        None => set,
        Some(prev) => prev.intersection(&set).cloned().collect(),
    });
}

/// aarch64 kernels name the SIMD unit `asimd`; 32-bit kernels call the same
/// unit `neon` (and list `vfp`, `thumb`, `half`). A 32-bit kernel on an ARMv8
/// core still prints `CPU architecture: 8`, so the feature names decide first.
fn arm_arch(
    features: &BTreeSet<String>,
    cpu_architecture: Option<&str>,
    model: Option<&str>,
) -> Arch {
    let version: Option<u32> = cpu_architecture.and_then(|v| {
        let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    });
    let says_aarch64 = cpu_architecture.is_some_and(|v| v.contains("AArch64"))
        || model.is_some_and(|m| m.contains("AArch64"));
    let aarch32_names = [
        "neon", "vfp", "vfpv3", "vfpv4", "thumb", "half", "swp", "edsp",
    ]
    .iter()
    .any(|f| features.contains(*f));
    if features.contains("asimd") || says_aarch64 {
        Arch::Aarch64
    } else if aarch32_names {
        Arch::Arm32(version.unwrap_or(7))
    } else if version == Some(8) {
        // aarch64 without any SIMD name (never seen in practice): the
        // architecture line is the only evidence left.
        Arch::Aarch64
    } else {
        Arch::Arm32(version.unwrap_or(7))
    }
}

/// Names ARM cores from the `CPU implementer`/`CPU part` pair (values from
/// the vendors' technical reference manuals, as listed by util-linux lscpu).
/// Used only to *name* the CPU; verdicts come from the feature flags.
pub fn arm_core_name(implementer: &str, part: &str) -> String {
    let imp = parse_hex(implementer);
    let p = parse_hex(part);
    let name = match (imp, p) {
        (Some(0x41), Some(p)) => match p {
            0xb76 => Some("ARM1176"),
            0xc05 => Some("Cortex-A5"),
            0xc07 => Some("Cortex-A7"),
            0xc08 => Some("Cortex-A8"),
            0xc09 => Some("Cortex-A9"),
            0xc0d => Some("Cortex-A12"),
            0xc0e => Some("Cortex-A17"),
            0xc0f => Some("Cortex-A15"),
            0xd01 => Some("Cortex-A32"),
            0xd03 => Some("Cortex-A53"),
            0xd04 => Some("Cortex-A35"),
            0xd05 => Some("Cortex-A55"),
            0xd07 => Some("Cortex-A57"),
            0xd08 => Some("Cortex-A72"),
            0xd09 => Some("Cortex-A73"),
            0xd0a => Some("Cortex-A75"),
            0xd0b => Some("Cortex-A76"),
            0xd0c => Some("Neoverse-N1"),
            0xd0d => Some("Cortex-A77"),
            0xd0e => Some("Cortex-A76AE"),
            0xd40 => Some("Neoverse-V1"),
            0xd41 => Some("Cortex-A78"),
            0xd42 => Some("Cortex-A78AE"),
            0xd44 => Some("Cortex-X1"),
            0xd46 => Some("Cortex-A510"),
            0xd47 => Some("Cortex-A710"),
            0xd48 => Some("Cortex-X2"),
            0xd49 => Some("Neoverse-N2"),
            0xd4a => Some("Neoverse-E1"),
            0xd4b => Some("Cortex-A78C"),
            0xd4d => Some("Cortex-A715"),
            0xd4e => Some("Cortex-X3"),
            0xd4f => Some("Neoverse-V2"),
            0xd80 => Some("Cortex-A520"),
            0xd81 => Some("Cortex-A720"),
            0xd82 => Some("Cortex-X4"),
            0xd84 => Some("Neoverse-V3"),
            0xd8e => Some("Neoverse-N3"),
            _ => None,
        },
        (Some(0x4e), Some(0x000)) => Some("NVIDIA Denver"),
        (Some(0x4e), Some(0x003)) => Some("NVIDIA Denver 2"),
        (Some(0x4e), Some(0x004)) => Some("NVIDIA Carmel"),
        (Some(0x46), Some(0x001)) => Some("Fujitsu A64FX"),
        _ => None,
    };
    match name {
        Some(n) => n.to_string(),
        None => format!("implementer {implementer} part {part}"),
    }
}

fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u32::from_str_radix(digits, 16).ok()
}
