//! Parsing of `/proc/cpuinfo` text (x86, aarch64, 32-bit ARM and RISC-V
//! kernels).
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
    /// RISC-V, from the `isa` line (`rv64...`).
    Riscv64,
    /// RISC-V with 32-bit registers (`rv32...`).
    Riscv32,
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
            Arch::Riscv64 => "riscv64".to_string(),
            Arch::Riscv32 => "riscv32".to_string(),
            Arch::Unknown => "unknown".to_string(),
        }
    }

    pub fn is_x86(&self) -> bool {
        matches!(self, Arch::X86_64 | Arch::I686)
    }

    pub fn is_arm32(&self) -> bool {
        matches!(self, Arch::Arm32(_))
    }

    pub fn is_riscv(&self) -> bool {
        matches!(self, Arch::Riscv64 | Arch::Riscv32)
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
    /// `CPU implementer`/`CPU part` (with the number of each and
    /// "(big.LITTLE)" when the cores differ), prefixed by the `Hardware` line
    /// when there is one; on RISC-V `model name`, else `uarch`.
    pub model: String,
    /// x86 `flags`, ARM `Features` or the RISC-V extensions of the `isa`
    /// line (see [`riscv_extensions`]) that *every* logical CPU lists. On a
    /// big.LITTLE SoC a thread may run on any core, so a feature only some
    /// cores have cannot be counted on.
    pub flags: BTreeSet<String>,
    /// Number of `processor : N` entries.
    pub logical_cpus: usize,
    /// ARM `Hardware` line (board/SoC name on older kernels), if any.
    pub hardware: Option<String>,
    /// Distinct ARM core names in order of appearance ("Cortex-A57", ...).
    pub cores: Vec<String>,
    /// How many `CPU part` lines name each of [`CpuInfo::cores`], in the
    /// same order. Old 32-bit kernels print the part once for all CPUs, so
    /// the counts add up to `logical_cpus` only on kernels that print one
    /// block per CPU.
    pub core_counts: Vec<usize>,
}

impl CpuInfo {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// The flags among `names` that this CPU has, in the order of `names`.
    pub fn present<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names.iter().copied().filter(|n| self.has(n)).collect()
    }

    /// Cores of more than one kind (big.LITTLE / DynamIQ clusters).
    pub fn is_heterogeneous(&self) -> bool {
        self.cores.len() > 1
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
    "sse4_1",
    "ssse3",
    "sse2",
];

/// See [`RELEVANT_X86_FLAGS`]; both the aarch64 and the 32-bit ARM names.
pub const RELEVANT_ARM_FLAGS: &[&str] = &[
    "fp", "asimd", "fphp", "asimdhp", "asimdfhm", "bf16", "asimddp", "i8mm", "sve", "sve2",
    "svebf16", "svei8mm", "sme", "neon", "vfpv4", "vfpv3", "half",
];

/// See [`RELEVANT_X86_FLAGS`]; RISC-V extensions as [`riscv_extensions`]
/// names them.
pub const RELEVANT_RISCV_FLAGS: &[&str] = &[
    "f", "d", "v", "zfh", "zfhmin", "zvfh", "zvfhmin", "zfbfmin", "zvfbfmin", "zvfbfwma", "zve32x",
    "zve32f", "zve64x", "zve64f", "zve64d",
];

/// The flags worth reporting for `arch` (empty for an unknown one).
pub fn relevant_flags(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 | Arch::I686 => RELEVANT_X86_FLAGS,
        Arch::Aarch64 | Arch::Arm32(_) => RELEVANT_ARM_FLAGS,
        Arch::Riscv64 | Arch::Riscv32 => RELEVANT_RISCV_FLAGS,
        Arch::Unknown => &[],
    }
}

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
    let mut core_counts: Vec<usize> = Vec::new();
    let mut riscv: Option<(Arch, BTreeSet<String>)> = None;
    let mut uarch: Option<String> = None;
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
            "flags" => intersect(&mut x86_flags, words(value)),
            "Features" => intersect(&mut arm_features, words(value)),
            // RISC-V: `isa` is the ISA of all harts on kernels that also
            // print a per-hart `hart isa`; older ones print `isa` per hart.
            // Either way the intersection is what every hart has.
            "isa" | "hart isa" => {
                if let Some((xlen, exts)) = riscv_extensions(value) {
                    let arch = if xlen == 32 {
                        Arch::Riscv32
                    } else {
                        Arch::Riscv64
                    };
                    let mut acc = riscv.take().map(|(_, set)| set);
                    intersect(&mut acc, exts);
                    riscv = acc.map(|set| (arch, set));
                }
            }
            "uarch" if !value.is_empty() => {
                uarch.get_or_insert_with(|| value.to_string());
            }
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
                match cores.iter().position(|c| *c == name) {
                    Some(i) => core_counts[i] += 1,
                    None => {
                        cores.push(name);
                        core_counts.push(1);
                    }
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
    } else if let Some((arch, exts)) = riscv {
        (arch, exts)
    } else {
        (Arch::Unknown, BTreeSet::new())
    };

    let model = if arch.is_x86() {
        model_name.unwrap_or_else(|| "unknown x86 CPU".to_string())
    } else if arch.is_riscv() {
        // Vendor kernels print a `model name`; mainline prints `uarch`, the
        // device tree's compatible string ("sifive,u74-mc").
        model_name
            .or(uarch)
            .unwrap_or_else(|| "unknown RISC-V CPU".to_string())
    } else {
        let primary = if let Some(name) = arm_model(&cores, &core_counts, logical_cpus) {
            name
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
        core_counts,
    }
}

/// The ARM model from the decoded cores: "ARM Cortex-A72" for one kind of
/// core; for several, each with its number when every CPU printed its part,
/// e.g. "3x Cortex-A510 + 2x Cortex-A715 + 2x Cortex-A710 + 1x Cortex-X3
/// (big.LITTLE)".
fn arm_model(cores: &[String], counts: &[usize], logical_cpus: usize) -> Option<String> {
    match cores {
        [] => None,
        [only] => {
            let arm_ltd = only.starts_with("Cortex") || only.starts_with("Neoverse");
            Some(format!("{}{only}", if arm_ltd { "ARM " } else { "" }))
        }
        _ => {
            let counted = counts.iter().sum::<usize>() == logical_cpus;
            let clusters: Vec<String> = cores
                .iter()
                .zip(counts)
                .map(|(name, n)| {
                    if counted {
                        format!("{n}x {name}")
                    } else {
                        name.clone()
                    }
                })
                .collect();
            Some(format!("{} (big.LITTLE)", clusters.join(" + ")))
        }
    }
}

fn words(value: &str) -> BTreeSet<String> {
    value.split_whitespace().map(str::to_string).collect()
}

fn intersect(acc: &mut Option<BTreeSet<String>>, set: BTreeSet<String>) {
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

/// The extensions a RISC-V ISA string names, with its register width:
/// `rv64imafdcv_zicsr_zfh_zvfh` gives 64 and {"a", "c", "d", "f", "i", "m",
/// "v", "zfh", "zicsr", "zvfh"}. Single-letter extensions are the letters
/// after `rv64`/`rv32`, multi-letter ones (`z*`, `s*`, `x*`) the words
/// between underscores; all lower case. `g` stands for `imafd_zicsr_zifencei`
/// and is expanded. Version suffixes ("2p0", as toolchains write
/// `rv64i2p1_m2p0`) are dropped. `None` when the string is not a RISC-V ISA.
pub fn riscv_extensions(isa: &str) -> Option<(u32, BTreeSet<String>)> {
    let isa = isa.trim().to_ascii_lowercase();
    let (xlen, rest) = if let Some(rest) = isa.strip_prefix("rv64") {
        (64, rest)
    } else if let Some(rest) = isa.strip_prefix("rv32") {
        (32, rest)
    } else {
        return None;
    };
    fn add_single(c: char, exts: &mut BTreeSet<String>) {
        if c == 'g' {
            for e in ["i", "m", "a", "f", "d", "zicsr", "zifencei"] {
                exts.insert(e.to_string());
            }
        } else {
            exts.insert(c.to_string());
        }
    }
    let mut exts = BTreeSet::new();
    for (i, token) in rest.split('_').enumerate() {
        if token.is_empty() {
            continue;
        }
        let starts_multi = token.starts_with(['z', 's', 'x']) && token.len() > 1;
        if i == 0 || !starts_multi {
            // Single letters, each perhaps with a version ("i2p1"); a
            // multi-letter name written without its underscore ends them.
            let mut chars = token.char_indices().peekable();
            while let Some((at, c)) = chars.next() {
                if c == 'z' || c == 'x' {
                    exts.insert(strip_version(&token[at..]).to_string());
                    break;
                }
                if !c.is_ascii_alphabetic() {
                    continue;
                }
                add_single(c, &mut exts);
                // Skip a version: digits, then "p" and digits.
                if chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                    while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                        chars.next();
                    }
                    if chars.peek().is_some_and(|(_, p)| *p == 'p') {
                        chars.next();
                        while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                            chars.next();
                        }
                    }
                }
            }
        } else {
            exts.insert(strip_version(token).to_string());
        }
    }
    Some((xlen, exts))
}

/// "zicsr2p0" -> "zicsr"; names that end in a digit without the "NpM"
/// form ("zve64d" ends in a letter anyway) are left alone.
fn strip_version(ext: &str) -> &str {
    let bytes = ext.as_bytes();
    let mut end = bytes.len();
    let digits_before = |end: usize| {
        let mut i = end;
        while i > 0 && bytes[i - 1].is_ascii_digit() {
            i -= 1;
        }
        i
    };
    let minor = digits_before(end);
    if minor < end && minor > 0 && bytes[minor - 1] == b'p' {
        let major = digits_before(minor - 1);
        if major < minor - 1 && major > 1 {
            end = major;
        }
    }
    &ext[..end]
}

/// Names ARM cores from the `CPU implementer`/`CPU part` pair. The values
/// are those of Linux's `arch/arm64/include/asm/cputype.h` and util-linux
/// lscpu (taken from the vendors' technical reference manuals); parts not
/// listed there are reported by number rather than guessed. Used only to
/// *name* the CPU; verdicts come from the feature flags.
pub fn arm_core_name(implementer: &str, part: &str) -> String {
    let imp = parse_hex(implementer);
    let p = parse_hex(part);
    let name = match (imp, p) {
        // ARM Ltd.
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
            0xd06 => Some("Cortex-A65"),
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
            0xd4c => Some("Cortex-X1C"),
            0xd4d => Some("Cortex-A715"),
            0xd4e => Some("Cortex-X3"),
            0xd4f => Some("Neoverse-V2"),
            0xd80 => Some("Cortex-A520"),
            0xd81 => Some("Cortex-A720"),
            0xd82 => Some("Cortex-X4"),
            0xd84 => Some("Neoverse-V3"),
            0xd85 => Some("Cortex-X925"),
            0xd87 => Some("Cortex-A725"),
            0xd8e => Some("Neoverse-N3"),
            _ => None,
        },
        // Cavium.
        (Some(0x43), Some(p)) => match p {
            0x0a1 => Some("Cavium ThunderX"),
            0x0a2 => Some("Cavium ThunderX 81xx"),
            0x0a3 => Some("Cavium ThunderX 83xx"),
            0x0af => Some("Cavium ThunderX2"),
            _ => None,
        },
        // Fujitsu.
        (Some(0x46), Some(0x001)) => Some("Fujitsu A64FX"),
        // HiSilicon. 0xd40 is the Cortex-A76-class core of the Kirin SoCs,
        // reported under HiSilicon's implementer code.
        (Some(0x48), Some(p)) => match p {
            0xd01 => Some("HiSilicon TaiShan v110"),
            0xd02 => Some("HiSilicon HIP09"),
            0xd40 => Some("HiSilicon Cortex-A76-class"),
            _ => None,
        },
        // NVIDIA.
        (Some(0x4e), Some(p)) => match p {
            0x000 => Some("NVIDIA Denver"),
            0x003 => Some("NVIDIA Denver 2"),
            0x004 => Some("NVIDIA Carmel"),
            _ => None,
        },
        // APM.
        (Some(0x50), Some(0x000)) => Some("APM X-Gene"),
        // Qualcomm. Linux's Kryo erratum matches the whole 0x2xx family
        // (Snapdragon 820/821); 0x800 is both "Kryo 2XX Gold" and
        // "Falkor V1" in cputype.h. Newer Snapdragons report ARM's own
        // implementer and Cortex parts.
        (Some(0x51), Some(p)) => match p {
            0x200..=0x2ff => Some("Qualcomm Kryo"),
            0x800 => Some("Qualcomm Kryo 2XX Gold / Falkor V1"),
            0x801 => Some("Qualcomm Kryo 2XX Silver"),
            0x802 => Some("Qualcomm Kryo 3XX Gold"),
            0x803 => Some("Qualcomm Kryo 3XX Silver"),
            0x804 => Some("Qualcomm Kryo 4XX Gold"),
            0x805 => Some("Qualcomm Kryo 4XX Silver"),
            0xc00 => Some("Qualcomm Falkor"),
            0x001 => Some("Qualcomm Oryon"),
            _ => None,
        },
        // Apple (Asahi Linux on M1/M2).
        (Some(0x61), Some(p)) => match p {
            0x022 => Some("Apple M1 Icestorm"),
            0x023 => Some("Apple M1 Firestorm"),
            0x024 => Some("Apple M1 Pro Icestorm"),
            0x025 => Some("Apple M1 Pro Firestorm"),
            0x028 => Some("Apple M1 Max Icestorm"),
            0x029 => Some("Apple M1 Max Firestorm"),
            0x032 => Some("Apple M2 Blizzard"),
            0x033 => Some("Apple M2 Avalanche"),
            0x034 => Some("Apple M2 Pro Blizzard"),
            0x035 => Some("Apple M2 Pro Avalanche"),
            0x038 => Some("Apple M2 Max Blizzard"),
            0x039 => Some("Apple M2 Max Avalanche"),
            _ => None,
        },
        // Microsoft: Azure Cobalt 100 (a Neoverse N2, r0p0).
        (Some(0x6d), Some(0xd49)) => Some("Microsoft Azure Cobalt 100"),
        // Ampere (the Altra and Altra Max report ARM's Neoverse-N1).
        (Some(0xc0), Some(p)) => match p {
            0xac3 => Some("Ampere-1"),
            0xac4 => Some("Ampere-1A"),
            _ => None,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn riscv_isa_strings() {
        // Mainline kernel form: single letters, then `_`-separated names.
        let (xlen, exts) = riscv_extensions("rv64imafdcv_zicsr_zfh_zvfh").unwrap();
        assert_eq!(xlen, 64);
        assert_eq!(
            exts,
            set(&["i", "m", "a", "f", "d", "c", "v", "zicsr", "zfh", "zvfh"])
        );
        // "g" is imafd_zicsr_zifencei.
        let (_, exts) = riscv_extensions("rv64gc").unwrap();
        assert_eq!(
            exts,
            set(&["i", "m", "a", "f", "d", "c", "zicsr", "zifencei"])
        );
        // Toolchain form with versions.
        let (_, exts) =
            riscv_extensions("rv64i2p1_m2p0_a2p1_f2p2_d2p2_c2p0_v1p0_zicsr2p0_zfh1p0").unwrap();
        assert_eq!(
            exts,
            set(&["i", "m", "a", "f", "d", "c", "v", "zicsr", "zfh"])
        );
        // Names with digits keep them; upper case is accepted.
        let (xlen, exts) = riscv_extensions("RV32IMAC_Zve32x_Zvl128b").unwrap();
        assert_eq!(xlen, 32);
        assert_eq!(exts, set(&["i", "m", "a", "c", "zve32x", "zvl128b"]));
        // A multi-letter name glued to the letters.
        let (_, exts) = riscv_extensions("rv64imafdczicsr").unwrap();
        assert!(exts.contains("zicsr") && exts.contains("c") && !exts.contains("z"));
        assert_eq!(riscv_extensions("armv8"), None);
        assert_eq!(strip_version("zicsr2p0"), "zicsr");
        assert_eq!(strip_version("zve64d"), "zve64d");
        assert_eq!(strip_version("zvl256b"), "zvl256b");
    }

    #[test]
    fn riscv_harts_intersect_and_name_the_cpu() {
        // Older kernels print `isa` per hart. One hart with V, one without
        // (a hypothetical mixed-core SoC): V cannot be counted on.
        let text =
            "processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdcv_zicsr_zvfh\nmmu\t\t: sv39\n\n\
                    processor\t: 1\nhart\t\t: 1\nisa\t\t: rv64imafdc_zicsr\nmmu\t\t: sv39\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.arch, Arch::Riscv64);
        assert_eq!(info.arch.name(), "riscv64");
        assert_eq!(info.logical_cpus, 2);
        assert!(info.has("f") && info.has("zicsr"));
        assert!(!info.has("v") && !info.has("zvfh"));
        assert_eq!(info.model, "unknown RISC-V CPU");
        // Newer kernels: `isa` for all harts, `hart isa` for each; mainline
        // names the core with `uarch` (the device tree's compatible).
        let text = "processor\t: 0\nhart\t\t: 1\nisa\t\t: rv64imafdc_zicsr\nmmu\t\t: sv39\n\
                    uarch\t\t: sifive,u74-mc\nhart isa\t: rv64imafdc_zicsr_zba\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.model, "sifive,u74-mc");
        assert!(info.has("zicsr") && !info.has("zba"));
        assert_eq!(
            parse_cpuinfo("processor : 0\nisa : rv32imac\n").arch,
            Arch::Riscv32
        );
    }

    #[test]
    fn arm_core_table() {
        for (imp, part, name) in [
            ("0x41", "0xd03", "Cortex-A53"),
            ("0x41", "0xd05", "Cortex-A55"),
            ("0x41", "0xd06", "Cortex-A65"),
            ("0x41", "0xd08", "Cortex-A72"),
            ("0x41", "0xd0c", "Neoverse-N1"),
            ("0x41", "0xd40", "Neoverse-V1"),
            ("0x41", "0xd42", "Cortex-A78AE"),
            ("0x41", "0xd4a", "Neoverse-E1"),
            ("0x41", "0xd4b", "Cortex-A78C"),
            ("0x41", "0xd4f", "Neoverse-V2"),
            ("0x41", "0xd80", "Cortex-A520"),
            ("0x41", "0xd81", "Cortex-A720"),
            ("0x41", "0xd82", "Cortex-X4"),
            ("0x4e", "0x003", "NVIDIA Denver 2"),
            ("0x4e", "0x004", "NVIDIA Carmel"),
            ("0x48", "0xd01", "HiSilicon TaiShan v110"),
            ("0x48", "0xd40", "HiSilicon Cortex-A76-class"),
            ("0x51", "0x803", "Qualcomm Kryo 3XX Silver"),
            ("0x51", "0x205", "Qualcomm Kryo"),
            ("0x61", "0x023", "Apple M1 Firestorm"),
            ("0xc0", "0xac3", "Ampere-1"),
            ("0x46", "0x001", "Fujitsu A64FX"),
            ("0x43", "0x0af", "Cavium ThunderX2"),
        ] {
            assert_eq!(arm_core_name(imp, part), name, "{imp} {part}");
        }
        // The same part number means different cores for different
        // implementers; unknown pairs are reported by number.
        assert_ne!(
            arm_core_name("0x41", "0xd40"),
            arm_core_name("0x48", "0xd40")
        );
        assert_eq!(
            arm_core_name("0x41", "0xfff"),
            "implementer 0x41 part 0xfff"
        );
        assert_eq!(
            arm_core_name("0x99", "0xd03"),
            "implementer 0x99 part 0xd03"
        );
    }

    /// A Rockchip RK3399 (4x Cortex-A53 + 2x Cortex-A72) in the format of a
    /// 64-bit mainline kernel.
    fn rk3399() -> String {
        let mut text = String::new();
        for cpu in 0..6 {
            let part = if cpu < 4 { "0xd03" } else { "0xd08" };
            text.push_str(&format!(
                "processor\t: {cpu}\nBogoMIPS\t: 48.00\n\
                 Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n\
                 CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n\
                 CPU part\t: {part}\nCPU revision\t: 4\n\n"
            ));
        }
        text
    }

    #[test]
    fn big_little_model_lists_clusters_with_counts() {
        let info = parse_cpuinfo(&rk3399());
        assert_eq!(info.cores, ["Cortex-A53", "Cortex-A72"]);
        assert_eq!(info.core_counts, [4, 2]);
        assert!(info.is_heterogeneous());
        assert_eq!(info.model, "4x Cortex-A53 + 2x Cortex-A72 (big.LITTLE)");

        // Parts printed for fewer CPUs than there are: no counts.
        let partial = "processor : 0\nprocessor : 1\nprocessor : 2\n\
                       Features : fp asimd\nCPU implementer : 0x41\nCPU part : 0xd03\n\
                       CPU implementer : 0x41\nCPU part : 0xd08\n";
        assert_eq!(
            parse_cpuinfo(partial).model,
            "Cortex-A53 + Cortex-A72 (big.LITTLE)"
        );

        // One kind of core: the plain name, with the ARM prefix.
        let one = parse_cpuinfo(
            "processor : 0\nFeatures : fp asimd\nCPU implementer : 0x41\nCPU part : 0xd0b\n",
        );
        assert!(!one.is_heterogeneous());
        assert_eq!(one.model, "ARM Cortex-A76");
    }
}
