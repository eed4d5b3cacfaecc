//! Which precisions the hardware computes natively, decided from CPU flags or
//! the CUDA compute capability.
//!
//! Every rule comes from the vendors' documentation of the instruction or
//! the capability (Intel SDM / ARM ARM feature names, NVIDIA's CUDA C
//! Programming Guide throughput table and TensorRT support matrix), never
//! from a product name: a VM or a new CPU model is judged by what it reports.

use serde::{Deserialize, Serialize};

use super::cpuinfo::{Arch, CpuInfo};

/// The verdict for one precision on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The hardware has arithmetic for this precision (not only conversion).
    pub native: bool,
    /// The evidence in words: the flags or compute capability that decide
    /// it, or what is missing; after a probe, what the probe showed.
    pub reason: String,
    /// Flags and probe together: native *and* libtorch's kernels ran fast
    /// enough in the probe. Absent where no probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerated: Option<bool>,
    /// FP32 time / this precision's time in the micro-benchmark (geometric
    /// mean over a GEMM and a convolution). Absent where no probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_speedup_vs_fp32: Option<f64>,
    /// What the probe measured (timings) or why it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_note: Option<String>,
}

impl Verdict {
    pub fn new(native: bool, reason: impl Into<String>) -> Self {
        Verdict {
            native,
            reason: reason.into(),
            accelerated: None,
            probe_speedup_vs_fp32: None,
            probe_note: None,
        }
    }
}

/// The four verdicts of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionVerdicts {
    pub fp32: Verdict,
    pub fp16: Verdict,
    pub bf16: Verdict,
    pub int8: Verdict,
}

/// The precisions precisiond times, in report order.
pub const PRECISIONS: [&str; 4] = ["fp32", "fp16", "bf16", "int8"];

fn join(flags: &[&str]) -> String {
    flags.join(", ")
}

/// Verdicts for a CPU from its parsed `/proc/cpuinfo`.
pub fn cpu_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    match cpu.arch {
        Arch::X86_64 | Arch::I686 => x86_verdicts(cpu),
        Arch::Aarch64 => aarch64_verdicts(cpu),
        Arch::Arm32(_) => arm32_verdicts(cpu),
        Arch::Unknown => PrecisionVerdicts {
            fp32: Verdict::new(true, "FP32 is always native"),
            fp16: Verdict::new(false, "unknown architecture: no CPU flags to decide FP16"),
            bf16: Verdict::new(false, "unknown architecture: no CPU flags to decide BF16"),
            int8: Verdict::new(false, "unknown architecture: no CPU flags to decide INT8"),
        },
    }
}

fn x86_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    let simd = cpu.present(&["avx512f", "avx2", "fma", "avx", "sse4_2", "sse2"]);
    let fp32 = Verdict::new(
        true,
        match simd.first() {
            Some(widest) => format!("FP32 is always native (widest SIMD: {widest})"),
            None => "FP32 is always native".to_string(),
        },
    );

    let fp16_flags = cpu.present(&["avx512_fp16", "amx_fp16"]);
    let fp16 = if !fp16_flags.is_empty() {
        Verdict::new(
            true,
            format!("{}: FP16 arithmetic in hardware", join(&fp16_flags)),
        )
    } else if cpu.has("f16c") {
        Verdict::new(
            false,
            "no avx512_fp16/amx_fp16; f16c only converts FP16 to and from FP32, \
             the arithmetic runs in FP32 (emulated)",
        )
    } else {
        Verdict::new(
            false,
            "no avx512_fp16/amx_fp16 and no f16c: FP16 is converted and computed in software",
        )
    };

    let bf16_flags = cpu.present(&["avx512_bf16", "amx_bf16"]);
    let bf16 = if !bf16_flags.is_empty() {
        Verdict::new(
            true,
            format!("{}: BF16 dot products in hardware", join(&bf16_flags)),
        )
    } else if cpu.has("avx_ne_convert") {
        Verdict::new(
            false,
            "no avx512_bf16/amx_bf16; avx_ne_convert only converts, \
             BF16 is computed in FP32 (emulated)",
        )
    } else {
        Verdict::new(
            false,
            "no avx512_bf16/amx_bf16: BF16 is converted and computed in FP32 (emulated)",
        )
    };

    let int8_flags = cpu.present(&["amx_int8", "avx512_vnni", "avx_vnni", "avx_vnni_int8"]);
    let int8 = if !int8_flags.is_empty() {
        Verdict::new(
            true,
            format!("{}: INT8 dot products in hardware", join(&int8_flags)),
        )
    } else if cpu.has("avx2") {
        Verdict::new(
            false,
            "no VNNI/AMX-INT8 dot product; INT8 is still supported through AVX2 kernels, \
             without VNNI (multiply-add in several instructions)",
        )
    } else {
        Verdict::new(
            false,
            "no VNNI/AMX-INT8 and no AVX2: INT8 runs on SSE/reference kernels",
        )
    };

    PrecisionVerdicts {
        fp32,
        fp16,
        bf16,
        int8,
    }
}

fn aarch64_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    let fp32 = Verdict::new(true, "FP32 is always native (asimd)");

    let fp16_flags = cpu.present(&["asimdhp", "fphp"]);
    let fp16 = if !fp16_flags.is_empty() {
        Verdict::new(
            true,
            format!(
                "{}: FP16 arithmetic in hardware (ARMv8.2-FP16)",
                join(&fp16_flags)
            ),
        )
    } else {
        Verdict::new(
            false,
            "no asimdhp/fphp: FP16 is storage and conversion only, computed in FP32",
        )
    };

    let bf16_flags = cpu.present(&["bf16", "svebf16"]);
    let bf16 = if !bf16_flags.is_empty() {
        Verdict::new(
            true,
            format!("{}: BF16 dot products in hardware", join(&bf16_flags)),
        )
    } else {
        Verdict::new(
            false,
            "no bf16 feature: BF16 is converted and computed in FP32",
        )
    };

    let int8 = arm_int8(cpu);
    PrecisionVerdicts {
        fp32,
        fp16,
        bf16,
        int8,
    }
}

fn arm_int8(cpu: &CpuInfo) -> Verdict {
    let mut parts = Vec::new();
    if cpu.has("asimddp") {
        parts.push("asimddp (SDOT/UDOT dot product)");
    }
    if cpu.has("i8mm") {
        parts.push("i8mm (SMMLA/UMMLA int8 matrix multiply)");
    }
    if !parts.is_empty() {
        Verdict::new(true, format!("{}: INT8 in hardware", parts.join(", ")))
    } else if cpu.has("asimd") || cpu.has("neon") {
        Verdict::new(
            false,
            "no asimddp/i8mm: no INT8 dot product; INT8 runs through NEON widening \
             multiplies (qnnpack)",
        )
    } else {
        Verdict::new(
            false,
            "no NEON/asimd and no dot product: INT8 runs on scalar code",
        )
    }
}

fn arm32_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    let arch = cpu.arch.name();
    let fp32 = Verdict::new(
        true,
        if cpu.has("neon") {
            "FP32 is always native (neon)".to_string()
        } else {
            "FP32 is always native".to_string()
        },
    );
    // 32-bit ARM code has no FP16/BF16 arithmetic that libtorch or the
    // compilers use: `half` and `vfpv4` mean FP16 storage and conversion.
    let conv = cpu.present(&["half", "vfpv4"]);
    let fp16 = Verdict::new(
        false,
        if conv.is_empty() {
            format!("32-bit ARM ({arch}): no FP16 arithmetic")
        } else {
            format!(
                "32-bit ARM ({arch}): no FP16 arithmetic; {} mean FP16 storage/conversion only",
                join(&conv)
            )
        },
    );
    let bf16 = Verdict::new(false, format!("32-bit ARM ({arch}): no BF16 arithmetic"));
    let int8 = arm_int8(cpu);
    PrecisionVerdicts {
        fp32,
        fp16,
        bf16,
        int8,
    }
}

/// Verdicts for a CUDA GPU from its compute capability.
///
/// Sources: CUDA C Programming Guide (arithmetic throughput per compute
/// capability; `__dp4a` needs 6.1) and the TensorRT support matrix (FP16 on
/// 5.3, 6.0, 6.2 and 7.0+; INT8 on 6.1 and 7.0+, not on 6.2; INT8 tensor
/// cores from 7.2).
pub fn cuda_verdicts(major: u32, minor: u32) -> PrecisionVerdicts {
    let cc = major * 10 + minor;
    let cap = format!("compute capability {major}.{minor}");

    let fp32 = Verdict::new(true, format!("FP32 is always native ({cap})"));

    let fp16 = if cc >= 70 {
        Verdict::new(
            true,
            format!("{cap}: FP16 arithmetic with tensor cores (from 7.0)"),
        )
    } else if cc == 61 {
        Verdict::new(
            true,
            format!(
                "{cap}: FP16 arithmetic exists but at 1/64 of the FP32 rate (no fast FP16 path, \
                 expect it slower than FP32)"
            ),
        )
    } else if cc >= 53 {
        Verdict::new(
            true,
            format!("{cap}: FP16 arithmetic at twice the FP32 rate (from 5.3), no tensor cores (from 7.0)"),
        )
    } else {
        Verdict::new(
            false,
            format!("{cap}: no FP16 arithmetic (needs 5.3), FP16 is storage/conversion only"),
        )
    };

    let bf16 = if cc >= 80 {
        Verdict::new(
            true,
            format!("{cap}: BF16 arithmetic with tensor cores (from 8.0)"),
        )
    } else {
        Verdict::new(
            false,
            format!("{cap}: no BF16 arithmetic (needs 8.0); BF16 is computed in FP32 (emulated)"),
        )
    };

    let int8 = if cc >= 75 {
        Verdict::new(
            true,
            format!("{cap}: INT8 tensor cores (from 7.5), via TensorRT"),
        )
    } else if cc == 72 {
        Verdict::new(
            true,
            format!("{cap}: INT8 tensor cores (from 7.2, Xavier), via TensorRT"),
        )
    } else if cc >= 70 || cc == 61 {
        Verdict::new(
            true,
            format!("{cap}: INT8 dot product dp4a (from 6.1), no INT8 tensor cores (from 7.2), via TensorRT"),
        )
    } else if cc == 62 || cc == 60 {
        Verdict::new(
            false,
            format!("{cap}: no fast INT8 (TensorRT supports INT8 on 6.1 and 7.0+, not on 6.0/6.2)"),
        )
    } else {
        Verdict::new(
            false,
            format!("{cap}: no INT8 dot product (dp4a needs 6.1)"),
        )
    };

    PrecisionVerdicts {
        fp32,
        fp16,
        bf16,
        int8,
    }
}

/// A readable architecture name for a compute capability, with the Jetson
/// module it appears in where that is the only product with it.
pub fn cuda_architecture(major: u32, minor: u32) -> &'static str {
    match (major, minor) {
        (3, _) => "Kepler",
        (5, 3) => "Maxwell (Tegra X1: Jetson TX1 / Nano)",
        (5, _) => "Maxwell",
        (6, 2) => "Pascal (Tegra X2: Jetson TX2)",
        (6, _) => "Pascal",
        (7, 2) => "Volta (Xavier: Jetson AGX Xavier / Xavier NX)",
        (7, 5) => "Turing",
        (7, _) => "Volta",
        (8, 7) => "Ampere (Orin: Jetson AGX Orin / Orin NX / Orin Nano)",
        (8, 9) => "Ada Lovelace",
        (8, _) => "Ampere",
        (9, _) => "Hopper",
        (10, _) | (11, _) | (12, _) => "Blackwell",
        _ => "unknown architecture",
    }
}
