//! When libtorch dies of an illegal instruction: which instruction-set
//! features this CPU lacks that a prebuilt libtorch assumes, and what to do
//! about it. PyPI's aarch64 torch wheels are built for ARMv8.2-A cores
//! (Cortex-A76, Neoverse-N1, Jetson Orin's Cortex-A78AE and newer); on an
//! ARMv8.0 core (Cortex-A53/A57/A72: Raspberry Pi 3 and 4, Jetson
//! Nano/TX1/TX2) some of their kernels stop with SIGILL. Decided from
//! /proc/cpuinfo alone, so the supervisor (which never loads libtorch) can
//! say it.

use super::cpuinfo::{Arch, CpuInfo};

/// The ARMv8.1/8.2-A features those builds are made for, and their words.
pub const ARMV8_2_FEATURES: [(&str, &str); 3] = [
    ("atomics", "LSE atomics, ARMv8.1"),
    ("asimdhp", "FP16 arithmetic, ARMv8.2"),
    ("asimddp", "dot product, ARMv8.2"),
];

/// The ARMv8.2-A features an aarch64 CPU lacks (empty elsewhere, and on
/// ARMv8.2 cores).
pub fn missing_armv8_2(cpu: &CpuInfo) -> Vec<&'static str> {
    if cpu.arch != Arch::Aarch64 {
        return Vec::new();
    }
    ARMV8_2_FEATURES
        .iter()
        .filter(|(flag, _)| !cpu.has(flag))
        .map(|(flag, _)| *flag)
        .collect()
}

/// Why libtorch died of an illegal instruction on this CPU and what to do,
/// when the CPU's features explain it; None when they do not.
pub fn explain_illegal_instruction(cpu: &CpuInfo) -> Option<String> {
    let missing = missing_armv8_2(cpu);
    if missing.is_empty() {
        return None;
    }
    let lacks: Vec<String> = ARMV8_2_FEATURES
        .iter()
        .filter(|(flag, _)| missing.contains(flag))
        .map(|(flag, what)| format!("{flag} ({what})"))
        .collect();
    Some(format!(
        "libtorch executed an illegal instruction (SIGILL) on this CPU ({}), an ARMv8.0-class \
         core without {}. PyPI's aarch64 libtorch, which this worker was most likely built \
         against, is made for ARMv8.2-A cores (Cortex-A76, Neoverse-N1, Jetson Orin's \
         Cortex-A78AE and newer) and some of its kernels stop on older ones (Cortex-A53/A57/A72: \
         Raspberry Pi 3 and 4, Jetson Nano/TX1/TX2). Build the worker against a libtorch made \
         for ARMv8.0 instead: Debian 13's libtorch 2.6 through worker/tch-0.19 (`make \
         build-aarch64-armv8.0`), or JetPack's own through LIBTORCH; see the README's \"ARM \
         boards\" section",
        cpu.model,
        lacks.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::cpuinfo::parse_cpuinfo;

    fn capture(name: &str) -> CpuInfo {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/cpuinfo")
            .join(name);
        parse_cpuinfo(&std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn armv8_0_cores_are_told_what_they_lack_and_what_to_do() {
        // Jetson TX1: Cortex-A57, ARMv8.0.
        let tx1 = capture("arm64-jetson-tx1.txt");
        assert_eq!(missing_armv8_2(&tx1), ["atomics", "asimdhp", "asimddp"]);
        let why = explain_illegal_instruction(&tx1).unwrap();
        for words in [
            "illegal instruction",
            "ARMv8.0",
            "atomics (LSE",
            "LIBTORCH",
            "A57",
        ] {
            assert!(why.contains(words), "{words}: {why}");
        }
        // ARMv9 cores have all of it; x86 is not judged by these rules.
        assert!(missing_armv8_2(&capture("arm64-cortex-a510-a710-a715-x3.txt")).is_empty());
        assert!(explain_illegal_instruction(&capture("x86_64-intel-i7-1165g7.txt")).is_none());
    }
}
