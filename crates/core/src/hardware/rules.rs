//! Which precisions the hardware computes natively, decided from CPU flags or
//! the CUDA compute capability.
//!
//! Every rule comes from the vendors' documentation of the instruction or
//! the capability (Intel SDM / ARM ARM feature names, the RISC-V ISA
//! manual's extension names, NVIDIA's CUDA C Programming Guide throughput
//! table and TensorRT support matrix), never from a product name: a VM or a
//! new CPU model is judged by what it reports.
//!
//! `native` means the hardware has arithmetic *in that precision*, not only
//! conversion to a wider one: `f16c` converts FP16 and computes in FP32, so
//! FP16 is not native there. For INT8 the line is an instruction that
//! multiplies 8-bit integers: NEON's widening multiplies, SSSE3/AVX2
//! `(v)pmaddubsw`, the RISC-V V extension. Dot-product instructions (one
//! instruction per four multiply-accumulates) are a separate fact,
//! [`Verdict::dot_product`]: they make INT8 faster, but their absence does
//! not make it emulated. Whether a native precision pays off is for the
//! measured speedup to say.

use serde::{Deserialize, Serialize};

use super::cpuinfo::{Arch, CpuInfo};
use crate::precision::Precision;

/// The verdict for one precision on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The hardware has arithmetic for this precision (not only conversion).
    pub native: bool,
    /// The evidence in words: the flags or compute capability that decide
    /// it, or what is missing; after a probe, what the probe showed.
    pub reason: String,
    /// INT8 only: the CPU has INT8 dot-product instructions (ARM
    /// `asimddp`/`i8mm`/SVE, x86 VNNI/AMX-INT8). Absent for the other
    /// precisions and where the flags cannot tell (RISC-V, CUDA, an unknown
    /// architecture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot_product: Option<bool>,
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
            dot_product: None,
            accelerated: None,
            probe_speedup_vs_fp32: None,
            probe_note: None,
        }
    }

    /// The same verdict with [`Verdict::dot_product`] set.
    pub fn with_dot_product(mut self, dot_product: bool) -> Self {
        self.dot_product = Some(dot_product);
        self
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

impl PrecisionVerdicts {
    /// The verdict on `precision`.
    pub fn get(&self, precision: Precision) -> &Verdict {
        match precision {
            Precision::Fp32 => &self.fp32,
            Precision::Fp16 => &self.fp16,
            Precision::Bf16 => &self.bf16,
            Precision::Int8 => &self.int8,
        }
    }
}

fn join(flags: &[&str]) -> String {
    flags.join(", ")
}

/// Verdicts for a CPU from its parsed `/proc/cpuinfo`.
pub fn cpu_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    match cpu.arch {
        Arch::X86_64 | Arch::I686 => x86_verdicts(cpu),
        Arch::Aarch64 => aarch64_verdicts(cpu),
        Arch::Arm32(_) => arm32_verdicts(cpu),
        Arch::Riscv64 | Arch::Riscv32 => riscv_verdicts(cpu),
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

    let int8 = x86_int8(cpu);

    PrecisionVerdicts {
        fp32,
        fp16,
        bf16,
        int8,
    }
}

/// INT8 on x86. The threshold is SSSE3's `pmaddubsw`, the first x86
/// instruction that multiplies 8-bit integers (u8 x s8, adding pairs into
/// 16 bits); SSE2 has only 16-bit multiplies, so INT8 must first be widened
/// (a conversion, as `f16c` is for FP16). AVX2's 256-bit `vpmaddubsw` is the
/// path of fbgemm and oneDNN behind libtorch's x86 engine, and fbgemm needs
/// AVX2; without it libtorch's INT8 runs on qnnpack's SSE kernels.
fn x86_int8(cpu: &CpuInfo) -> Verdict {
    let dot = cpu.present(&["amx_int8", "avx512_vnni", "avx_vnni", "avx_vnni_int8"]);
    if !dot.is_empty() {
        Verdict::new(
            true,
            format!(
                "{}: INT8 dot products in hardware (VNNI/AMX: 4-way 8-bit dot products into 32-bit \
                 accumulators)",
                join(&dot)
            ),
        )
        .with_dot_product(true)
    } else if cpu.has("avx2") {
        Verdict::new(
            true,
            "avx2: INT8 multiply-add in hardware (vpmaddubsw + vpmaddwd, the AVX2 kernels of \
             fbgemm/oneDNN behind libtorch's x86 engine); no avx512_vnni/avx_vnni/amx_int8 \
             dot product, so each multiply-accumulate takes several instructions",
        )
        .with_dot_product(false)
    } else if cpu.has("ssse3") {
        let which = join(&cpu.present(&["sse4_1", "ssse3"]));
        Verdict::new(
            true,
            format!(
                "{which}: 128-bit INT8 multiply-add in hardware (pmaddubsw); no avx2, which \
                 fbgemm (libtorch's x86/fbgemm engine) needs, so INT8 runs on qnnpack's SSE \
                 kernels; no VNNI/AMX-INT8 dot product"
            ),
        )
        .with_dot_product(false)
    } else {
        Verdict::new(
            false,
            "no ssse3/avx2: no instruction multiplies 8-bit integers (pmaddubsw needs SSSE3), \
             INT8 is widened to 16 bits first (SSE2 pmaddwd in qnnpack) or runs on scalar \
             code (emulated); no VNNI/AMX-INT8 dot product",
        )
        .with_dot_product(false)
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

/// INT8 on ARM (aarch64 and 32-bit kernels): NEON (`asimd` on aarch64,
/// where it is part of every ARMv8-A core; `neon` on 32-bit kernels) has
/// 8-bit multiplies (SMULL/UMULL/MLA on 8-bit lanes), which qnnpack/XNNPACK
/// use; the dot products (`asimddp` SDOT/UDOT, `i8mm` SMMLA/UMMLA, and SVE,
/// whose base instruction set has SDOT/UDOT) are reported apart.
fn arm_int8(cpu: &CpuInfo) -> Verdict {
    let mut dot = Vec::new();
    if cpu.has("asimddp") {
        dot.push("asimddp (SDOT/UDOT dot product)");
    }
    if cpu.has("i8mm") {
        dot.push("i8mm (SMMLA/UMMLA int8 matrix multiply)");
    }
    if cpu.has("sve") {
        dot.push("sve (SVE SDOT/UDOT dot product)");
    }
    let simd = if cpu.has("asimd") {
        Some("NEON (asimd)")
    } else if cpu.has("neon") {
        Some("NEON (neon)")
    } else {
        None
    };
    match (simd, dot.is_empty()) {
        (Some(simd), true) => Verdict::new(
            true,
            format!(
                "{simd}: INT8 multiply-accumulate in hardware via widening multiplies \
                 (qnnpack); no asimddp/i8mm dot product"
            ),
        )
        .with_dot_product(false),
        (Some(simd), false) => Verdict::new(
            true,
            format!(
                "{simd}: INT8 multiply-accumulate in hardware; {}: INT8 dot products in hardware",
                dot.join(", ")
            ),
        )
        .with_dot_product(true),
        // Never seen: a dot product without the SIMD unit it belongs to.
        (None, false) => Verdict::new(
            true,
            format!("{}: INT8 dot products in hardware", dot.join(", ")),
        )
        .with_dot_product(true),
        (None, true) => Verdict::new(
            false,
            "no NEON/asimd: no integer SIMD and no asimddp/i8mm dot product, \
             INT8 runs on scalar code (emulated)",
        )
        .with_dot_product(false),
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

/// Verdicts for RISC-V from the extensions of the `isa` line (RISC-V ISA
/// manual names): F is FP32 arithmetic; Zfh (scalar) and Zvfh (vector) are
/// FP16 arithmetic, while Zfhmin/Zvfhmin only load, store and convert FP16;
/// Zfbfmin/Zvfbfmin only convert BF16, Zvfbfwma adds the vector widening
/// BF16 multiply-add; V (and its embedded subsets Zve32x/Zve64x, which every
/// Zve* includes) has 8-bit integer vector arithmetic. No INT8 dot-product
/// extension is read, so [`Verdict::dot_product`] stays absent.
fn riscv_verdicts(cpu: &CpuInfo) -> PrecisionVerdicts {
    let vector = if cpu.has("v") {
        Some("v")
    } else {
        ["zve64d", "zve64f", "zve64x", "zve32f", "zve32x"]
            .into_iter()
            .find(|e| cpu.has(e))
    };

    let fp32 = if cpu.has("f") {
        Verdict::new(
            true,
            match vector {
                Some(v) if v != "zve64x" && v != "zve32x" => {
                    format!("f: FP32 arithmetic in hardware (vector: {v})")
                }
                _ => "f: FP32 arithmetic in hardware (scalar)".to_string(),
            },
        )
    } else {
        Verdict::new(
            false,
            "no F extension: FP32 is computed in software (soft-float)",
        )
    };

    let fp16_arith = cpu.present(&["zfh", "zvfh"]);
    let fp16_conv = cpu.present(&["zfhmin", "zvfhmin"]);
    let fp16 = if !fp16_arith.is_empty() {
        Verdict::new(
            true,
            format!(
                "{}: FP16 arithmetic in hardware{}",
                join(&fp16_arith),
                match (cpu.has("zfh"), cpu.has("zvfh")) {
                    (true, true) => " (scalar and vector)",
                    (true, false) => " (scalar only, no zvfh vector FP16)",
                    _ => " (vector)",
                }
            ),
        )
    } else if !fp16_conv.is_empty() {
        Verdict::new(
            false,
            format!(
                "no zfh/zvfh; {} only load, store and convert FP16, the arithmetic runs in FP32 \
                 (emulated)",
                join(&fp16_conv)
            ),
        )
    } else {
        Verdict::new(
            false,
            "no zfh/zvfh and no zfhmin/zvfhmin: FP16 is converted and computed in software",
        )
    };

    let bf16_conv = cpu.present(&["zfbfmin", "zvfbfmin"]);
    let bf16 = if cpu.has("zvfbfwma") {
        Verdict::new(
            true,
            "zvfbfwma: BF16 vector widening multiply-add (into FP32) in hardware",
        )
    } else if !bf16_conv.is_empty() {
        Verdict::new(
            false,
            format!(
                "no zvfbfwma; {} only convert BF16, the arithmetic runs in FP32 (emulated)",
                join(&bf16_conv)
            ),
        )
    } else {
        Verdict::new(
            false,
            "no zvfbfwma and no zfbfmin/zvfbfmin: BF16 is converted and computed in FP32 \
             (emulated)",
        )
    };

    let int8 = match vector {
        Some("v") => Verdict::new(
            true,
            "v: INT8 vector arithmetic in hardware (RVV 1.0 8-bit multiply-add, vwmacc); \
             no INT8 dot product judged on RISC-V",
        ),
        Some(sub) => Verdict::new(
            true,
            format!(
                "{sub} (embedded vector subset, no full v): INT8 vector arithmetic in hardware; \
                 no INT8 dot product judged on RISC-V"
            ),
        ),
        None => Verdict::new(
            false,
            "no v (vector) extension: no integer SIMD, INT8 runs on scalar code (emulated)",
        ),
    };

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::cpuinfo::parse_cpuinfo;

    fn verdicts(text: &str) -> PrecisionVerdicts {
        cpu_verdicts(&parse_cpuinfo(text))
    }

    /// An x86 `/proc/cpuinfo` entry with `flags` (the lines the parser
    /// reads, in the kernel's format).
    fn x86(model: &str, flags: &str) -> String {
        format!("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: {flags}\n")
    }

    /// Intel Haswell (Core i7-4770): AVX2, no VNNI.
    const HASWELL_FLAGS: &str =
        "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat \
        pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm \
        constant_tsc arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf \
        pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid \
        sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm \
        abm cpuid_fault epb invpcid_single pti ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority \
        ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid xsaveopt dtherm ida \
        arat pln pts md_clear flush_l1d";

    /// Intel Core 2 Duo (Merom): SSSE3, no SSE4.1, no AVX.
    const MEROM_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat \
        pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx lm constant_tsc \
        arch_perfmon pebs bts rep_good nopl cpuid aperfmperf pni dtes64 monitor ds_cpl vmx est \
        tm2 ssse3 cx16 xtpr pdcm lahf_lm dtherm";

    /// AMD Athlon 64 X2 (K8): SSE2/SSE3, no SSSE3.
    const K8_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat \
        pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt rdtscp lm 3dnowext 3dnow \
        rep_good nopl cpuid extd_apicid pni cx16 lahf_lm cmp_legacy svm extapic cr8_legacy";

    #[test]
    fn x86_int8_is_native_from_ssse3_and_dot_product_is_vnni() {
        let v = verdicts(&x86(
            "Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz",
            HASWELL_FLAGS,
        ))
        .int8;
        assert!(v.native, "{}", v.reason);
        assert_eq!(v.dot_product, Some(false));
        assert!(
            v.reason.starts_with("avx2:") && v.reason.contains("vpmaddubsw"),
            "{}",
            v.reason
        );
        assert!(v.reason.contains("no avx512_vnni"), "{}", v.reason);

        let v = verdicts(&x86("Intel(R) Core(TM)2 CPU T7200 @ 2.00GHz", MEROM_FLAGS)).int8;
        assert!(v.native, "{}", v.reason);
        assert_eq!(v.dot_product, Some(false));
        assert!(
            v.reason.starts_with("ssse3:") && v.reason.contains("qnnpack"),
            "{}",
            v.reason
        );

        let v = verdicts(&x86(
            "AMD Athlon(tm) 64 X2 Dual Core Processor 4200+",
            K8_FLAGS,
        ))
        .int8;
        assert!(!v.native, "{}", v.reason);
        assert_eq!(v.dot_product, Some(false));
        assert!(v.reason.contains("emulated"), "{}", v.reason);

        let with_vnni = format!("{HASWELL_FLAGS} avx_vnni");
        let v = verdicts(&x86("some x86", &with_vnni)).int8;
        assert!(
            v.native && v.reason.starts_with("avx_vnni:"),
            "{}",
            v.reason
        );
        assert_eq!(v.dot_product, Some(true));
    }

    /// A Raspberry Pi 4 (4x Cortex-A72) under Raspberry Pi OS's 64-bit
    /// kernel: NEON, no dot product.
    const PI4_64BIT: &str = "processor\t: 0\nBogoMIPS\t: 108.00\n\
        Features\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n\
        CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n\
        Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n";

    #[test]
    fn arm_int8_is_native_on_neon_and_dot_product_is_separate() {
        let v = verdicts(PI4_64BIT).int8;
        assert!(v.native, "{}", v.reason);
        assert_eq!(v.dot_product, Some(false));
        assert_eq!(
            v.reason,
            "NEON (asimd): INT8 multiply-accumulate in hardware via widening multiplies \
             (qnnpack); no asimddp/i8mm dot product"
        );
        assert_eq!(parse_cpuinfo(PI4_64BIT).model, "BCM2835: ARM Cortex-A72");

        // Cortex-A76 class (Raspberry Pi 5): asimddp.
        let v = verdicts(
            "processor : 0\nFeatures : fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp \
             asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer : 0x41\nCPU part : 0xd0b\n",
        )
        .int8;
        assert!(v.native && v.dot_product == Some(true), "{}", v.reason);
        assert!(v.reason.contains("asimddp"), "{}", v.reason);

        // A64FX-like: SVE without NEON's asimddp still has SDOT/UDOT.
        let v = verdicts(
            "processor : 0\nFeatures : fp asimd evtstrm sha1 sha2 crc32 atomics fphp asimdhp \
             cpuid asimdrdm fcma dcpop sve\nCPU implementer : 0x46\nCPU part : 0x001\n",
        )
        .int8;
        assert!(v.native && v.dot_product == Some(true), "{}", v.reason);
        assert!(v.reason.contains("sve"), "{}", v.reason);

        // 32-bit ARM without NEON (an ARM1176, Raspberry Pi 1/Zero): emulated.
        let v = verdicts(
            "processor : 0\nmodel name : ARMv6-compatible processor rev 7 (v6l)\n\
             Features : half thumb fastmult vfp edsp java tls\nCPU implementer : 0x41\n\
             CPU architecture: 7\nCPU part : 0xb76\n",
        )
        .int8;
        assert!(!v.native, "{}", v.reason);
        assert_eq!(v.dot_product, Some(false));
    }

    #[test]
    fn riscv_verdicts_from_extensions() {
        let isa = |isa: &str| verdicts(&format!("processor\t: 0\nhart\t\t: 0\nisa\t\t: {isa}\n"));

        // No V, no Zfh (a SiFive U74): FP32 only.
        let v = isa("rv64imafdc_zicntr_zicsr_zifencei_zihpm_zba_zbb");
        assert!(v.fp32.native);
        assert!(!v.fp16.native && !v.bf16.native && !v.int8.native);
        assert_eq!(v.int8.dot_product, None);
        assert!(v.int8.reason.contains("no v"), "{}", v.int8.reason);

        // Conversion-only FP16 and BF16 extensions are not arithmetic.
        let v = isa("rv64imafdcv_zfhmin_zfbfmin_zvfbfmin_zvfhmin");
        assert!(!v.fp16.native, "{}", v.fp16.reason);
        assert!(
            v.fp16.reason.contains("zfhmin, zvfhmin"),
            "{}",
            v.fp16.reason
        );
        assert!(!v.bf16.native, "{}", v.bf16.reason);
        assert!(v.bf16.reason.contains("only convert"), "{}", v.bf16.reason);
        assert!(v.int8.native, "{}", v.int8.reason);

        // Zvfbfwma: BF16 widening multiply-add. Zfh alone: scalar FP16.
        let v = isa("rv64imafdcv_zfh_zfhmin_zfbfmin_zvfbfmin_zvfbfwma");
        assert!(v.bf16.native, "{}", v.bf16.reason);
        assert!(v.fp16.native, "{}", v.fp16.reason);
        assert!(v.fp16.reason.contains("scalar only"), "{}", v.fp16.reason);

        // An embedded vector subset has 8-bit integer vector arithmetic.
        let v = isa("rv64imac_zve32x");
        assert!(v.int8.native, "{}", v.int8.reason);
        assert!(!v.fp32.native, "{}", v.fp32.reason);
        assert!(v.fp32.reason.contains("no F"), "{}", v.fp32.reason);
    }

    #[test]
    fn dot_product_is_serialised_only_where_it_applies() {
        let v = verdicts(PI4_64BIT);
        let text = toml::to_string(&v).unwrap();
        assert!(text.contains("dot_product = false"), "{text}");
        assert_eq!(text.matches("dot_product").count(), 1, "{text}");
        let back: PrecisionVerdicts = toml::from_str(&text).unwrap();
        assert_eq!(back, v);
        // A schema-1 verdict without the key still reads.
        let old: Verdict = toml::from_str("native = false\nreason = \"x\"\n").unwrap();
        assert_eq!(old.dot_product, None);
        assert_eq!(cuda_verdicts(8, 7).int8.dot_product, None);
    }
}
