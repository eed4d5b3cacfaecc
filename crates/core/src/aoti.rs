//! AOTInductor packages (`.pt2`, from `torch._inductor.aoti_compile_and_package`):
//! what a package is and holds, read from its zip directory and metadata
//! without loading it; whether this machine can run the compiled code it
//! carries; and the family of per-precision packages one model is exported
//! as (`NAME.pt2`, `NAME.bf16.pt2`, `NAME.fp16.pt2`, `NAME.int8.pt2`).
//!
//! No libtorch here: the daemon and the worker both use it, and the ISA
//! verdict must come before libtorch dlopens code that could die of an
//! illegal instruction.

use crate::hardware::cpuinfo::CpuInfo;
use crate::precision::Precision;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file extension of both AOTInductor packages and `torch.export.save`
/// archives.
pub const EXTENSION: &str = "pt2";

/// How to make a package, for every message that has to say it.
pub const HOW_TO_MAKE: &str = "make AOTInductor packages with scripts/precisiond-export.py \
     (or torch._inductor.aoti_compile_and_package(torch.export.export(model, inputs), \
     package_path=\"NAME.pt2\")) on the machine they are for";

/// Metadata keys precisiond-export.py adds (through `aot_inductor.metadata`).
pub mod keys {
    /// The precision the package was made for: fp32, fp16, bf16, int8.
    pub const PRECISION: &str = "precisiond.precision";
    /// The FP32 inputs, as `[[inputs]]` tables of a settings file.
    pub const INPUTS: &str = "precisiond.inputs";
    /// The compiler's instruction-set flags (`-mavx512f ...`, `-march=armv8-a+sve`).
    pub const ARCH_FLAGS: &str = "precisiond.arch_flags";
    /// Inductor's own keys.
    pub const CPU_ISA: &str = "AOTI_CPU_ISA";
    pub const DEVICE_KEY: &str = "AOTI_DEVICE_KEY";
    pub const MACHINE: &str = "AOTI_MACHINE";
    pub const COMPUTE_CAPABILITY: &str = "AOTI_COMPUTE_CAPABILITY";
}

/// What a `.pt2` file is.
#[derive(Debug, Clone, PartialEq)]
pub enum Pt2 {
    /// An AOTInductor package, with the metadata its compiler recorded.
    Package(Metadata),
    /// A `torch.export.save` archive: an exported program, no compiled code.
    ExportedProgram,
}

/// A package's metadata: Inductor's `AOTI_*` keys and what
/// `aot_inductor.metadata` added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata(pub BTreeMap<String, String>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// "cpu" or "cuda" (Inductor's `AOTI_DEVICE_KEY`); "cpu" when absent.
    pub fn device_key(&self) -> &str {
        self.get(keys::DEVICE_KEY).unwrap_or("cpu")
    }

    /// The precision the package declares (precisiond-export.py's key).
    pub fn precision(&self) -> Option<Precision> {
        self.get(keys::PRECISION).and_then(|p| p.parse().ok())
    }
}

/// Reads what a `.pt2` file is from its bytes (a zip archive). Err: not a
/// zip archive at all, with what to do.
pub fn inspect(bytes: &[u8]) -> Result<Pt2, InspectError> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(InspectError::NotZip)?;
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    // aoti_compile_and_package writes ARCHIVE/data/aotinductor/MODEL/*.so
    // with a `*_metadata.json` of the device facts beside each compiled file.
    let metadata_files: Vec<&String> = names
        .iter()
        .filter(|n| n.contains("/data/aotinductor/") && n.ends_with("_metadata.json"))
        .collect();
    let has_code = names
        .iter()
        .any(|n| n.contains("/data/aotinductor/") && (n.ends_with(".so") || n.ends_with(".cpp")));
    if !has_code {
        return Ok(Pt2::ExportedProgram);
    }
    let mut metadata = Metadata::default();
    // The wrapper's metadata holds the keys aot_inductor.metadata added; a
    // kernel's holds the device facts only. Read them all.
    for name in metadata_files {
        let mut text = String::new();
        let unreadable =
            |error: Box<dyn std::error::Error + Send + Sync>| InspectError::Unreadable {
                name: name.clone(),
                error,
            };
        zip.by_name(name)
            .map_err(|e| unreadable(e.into()))?
            .read_to_string(&mut text)
            .map_err(|e| unreadable(e.into()))?;
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|error| InspectError::NotJson {
                name: name.clone(),
                error,
            })?;
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            metadata.0.entry(k).or_insert(v);
        }
    }
    Ok(Pt2::Package(metadata))
}

/// Why a `.pt2` file's content cannot be read; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(
        "not an AOTInductor package: a .pt2 file is a zip archive, and this one cannot be read \
         as one ({0}); {how}",
        how = HOW_TO_MAKE
    )]
    NotZip(zip::result::ZipError),
    #[error("cannot read {name} in the package: {error}")]
    Unreadable {
        name: String,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{name} in the package is not a JSON object: {error}")]
    NotJson {
        name: String,
        error: serde_json::Error,
    },
}

/// The refusal of a `torch.export.save` archive, with how to make a package.
pub fn exported_program_refusal(file: &str) -> String {
    format!(
        "{file} is a torch.export.save archive (an exported program), not an AOTInductor \
         package: it holds no compiled code that libtorch can run without Python. Compile it on \
         this machine: `scripts/precisiond-export.py {file} --name NAME --out-dir DIR` writes \
         NAME.pt2 (FP32) and its BF16/FP16/INT8 variants; or {HOW_TO_MAKE}"
    )
}

/// The machine a package would run on: this CPU, and the compute
/// capabilities of the CUDA devices libtorch sees ("8.6").
pub struct Target<'a> {
    pub cpu: &'a CpuInfo,
    /// `uname -m` of this machine ("x86_64", "aarch64").
    pub machine: &'a str,
    pub cuda_capabilities: &'a [String],
}

/// Whether `target` can run the code in a package with `metadata`:
/// Err names what the package was compiled for and what this machine
/// lacks, both sides.
pub fn can_run(metadata: &Metadata, target: &Target) -> Result<(), CannotRun> {
    if let Some(machine) = metadata.get(keys::MACHINE) {
        if !same_machine(machine, target.machine) {
            return Err(CannotRun::OtherMachine {
                machine: machine.to_owned(),
                isa: metadata
                    .get(keys::CPU_ISA)
                    .unwrap_or("no AOTI_CPU_ISA")
                    .to_owned(),
                here: target.machine.to_owned(),
            });
        }
    }
    match metadata.device_key() {
        "cpu" => cpu_can_run(metadata, target.cpu),
        "cuda" => {
            let wanted = metadata.get(keys::COMPUTE_CAPABILITY).unwrap_or("");
            let wanted = capability_name(wanted);
            if target.cuda_capabilities.is_empty() {
                return Err(CannotRun::NoCudaDevice { wanted });
            }
            if !target.cuda_capabilities.contains(&wanted) {
                return Err(CannotRun::OtherCapability {
                    wanted,
                    have: target.cuda_capabilities.to_vec(),
                });
            }
            Ok(())
        }
        other => Err(CannotRun::UnknownDevice(other.to_owned())),
    }
}

/// Why this machine cannot run a package's compiled code: what the package
/// was compiled for and what this machine lacks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CannotRun {
    #[error(
        "the package was compiled for {machine} CPUs ({isa}) and this machine is {here}: \
         compile it on (or for) this machine"
    )]
    OtherMachine {
        machine: String,
        isa: String,
        here: String,
    },
    #[error(
        "the package was compiled for a CUDA GPU of compute capability {wanted} and libtorch \
         sees no CUDA device here"
    )]
    NoCudaDevice { wanted: String },
    #[error(
        "the package was compiled for CUDA compute capability {wanted} and this machine's GPUs \
         have {}: compile it on (or for) this GPU",
        have.join(", ")
    )]
    OtherCapability { wanted: String, have: Vec<String> },
    #[error("the package was compiled for device `{0}`, which precisiond does not run")]
    UnknownDevice(String),
    /// Its code would die of an illegal instruction here.
    #[error(
        "the package was compiled for {isa} (it needs the CPU flags {}) and this CPU ({cpu}) \
         lacks {}: its code would die of an illegal instruction. Compile the package on this \
         machine, or for an instruction set it has (scripts/precisiond-export.py --isa)",
        needed.join(" "),
        missing.join(" ")
    )]
    MissingCpuFlags {
        isa: String,
        needed: Vec<&'static str>,
        cpu: String,
        missing: Vec<&'static str>,
    },
}

/// `AOTI_COMPUTE_CAPABILITY` is major*10+minor ("86"); reports say "8.6".
fn capability_name(raw: &str) -> String {
    match raw.parse::<u32>() {
        Ok(n) if !raw.contains('.') => format!("{}.{}", n / 10, n % 10),
        _ => raw.to_owned(),
    }
}

fn same_machine(a: &str, b: &str) -> bool {
    let norm = |m: &str| match m.to_ascii_lowercase().as_str() {
        "amd64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        other => other.to_owned(),
    };
    norm(a) == norm(b)
}

/// The /proc/cpuinfo flags the compiled code of a package needs: from
/// Inductor's ISA words (`AOTI_CPU_ISA`, e.g. "AVX512 AVX512_VNNI") and
/// the compiler flags precisiond-export.py records (`-mavx512bf16`,
/// `-march=armv8-a+sve+bf16`). Unknown words need nothing: precisiond
/// cannot check what it does not know, and says so in the report.
pub fn required_flags(metadata: &Metadata) -> (Vec<&'static str>, Vec<String>) {
    let mut flags: Vec<&'static str> = Vec::new();
    let mut unknown = Vec::new();
    for word in metadata.get(keys::CPU_ISA).unwrap_or("").split_whitespace() {
        let needs: &[&'static str] = match word.to_ascii_uppercase().as_str() {
            // Inductor's VecAVX2: -mavx2 -mfma -mf16c.
            "AVX2" => &["avx2", "fma", "f16c"],
            // VecAVX512: -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma.
            "AVX512" => &["avx512f", "avx512dq", "avx512vl", "avx512bw", "fma"],
            "AVX512_VNNI" => &["avx512_vnni"],
            // VecAMX: -mamx-tile -mamx-bf16 -mamx-int8.
            "AMX_TILE" => &["amx_tile", "amx_bf16", "amx_int8"],
            "ASIMD" | "NEON" => &["asimd"],
            "SVE" | "SVE256" => &["sve"],
            _ => {
                unknown.push(word.to_owned());
                &[]
            }
        };
        flags.extend_from_slice(needs);
    }
    for flag in metadata
        .get(keys::ARCH_FLAGS)
        .unwrap_or("")
        .split_whitespace()
    {
        let needs: &[&'static str] = if let Some(march) = flag.strip_prefix("-march=") {
            let mut extra: Vec<&'static str> = Vec::new();
            for ext in march.split('+').skip(1) {
                match ext {
                    "sve" => extra.push("sve"),
                    "sve2" => extra.push("sve2"),
                    "bf16" => extra.push("bf16"),
                    "i8mm" => extra.push("i8mm"),
                    "fp16" => extra.push("fphp"),
                    "dotprod" => extra.push("asimddp"),
                    _ => {}
                }
            }
            flags.extend(extra);
            &[]
        } else {
            match flag {
                "-mavx2" => &["avx2"],
                "-mfma" => &["fma"],
                "-mf16c" => &["f16c"],
                "-mavx512f" => &["avx512f"],
                "-mavx512dq" => &["avx512dq"],
                "-mavx512vl" => &["avx512vl"],
                "-mavx512bw" => &["avx512bw"],
                "-mavx512vnni" => &["avx512_vnni"],
                "-mavx512bf16" => &["avx512_bf16"],
                "-mavx512fp16" => &["avx512_fp16"],
                "-mamx-tile" => &["amx_tile"],
                "-mamx-bf16" => &["amx_bf16"],
                "-mamx-int8" => &["amx_int8"],
                "-mamx-fp16" => &["amx_fp16"],
                _ => &[],
            }
        };
        flags.extend_from_slice(needs);
    }
    flags.sort_unstable();
    flags.dedup();
    (flags, unknown)
}

fn cpu_can_run(metadata: &Metadata, cpu: &CpuInfo) -> Result<(), CannotRun> {
    let (needed, _) = required_flags(metadata);
    let missing: Vec<&'static str> = needed.iter().copied().filter(|f| !cpu.has(f)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CannotRun::MissingCpuFlags {
        isa: metadata
            .get(keys::CPU_ISA)
            .unwrap_or("(no AOTI_CPU_ISA)")
            .to_owned(),
        needed,
        cpu: cpu.model.clone(),
        missing,
    })
}

/// Why nothing in a package could be checked against this CPU, when that
/// is so: ISA words precisiond does not know.
pub fn unchecked_isa_note(metadata: &Metadata) -> Option<String> {
    let (_, unknown) = required_flags(metadata);
    (!unknown.is_empty()).then(|| {
        format!(
            "the package's instruction set words {} are unknown to precisiond: it could not check \
             that this CPU has them",
            unknown.join(" ")
        )
    })
}

/// Whether `path` names a `.pt2` file.
pub fn is_pt2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.extension()
        .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(EXTENSION.as_bytes()))
}

/// The variant precisions a family can hold beside its FP32 head.
pub const VARIANTS: [Precision; 3] = [Precision::Bf16, Precision::Fp16, Precision::Int8];

/// For a variant's file name (`NAME.bf16.pt2`), its family's head
/// (`NAME.pt2`, the FP32 package) and its precision. None for a head or
/// any other file.
pub fn variant_of(path: &Path) -> Option<(PathBuf, Precision)> {
    if !is_pt2(path) {
        return None;
    }
    let stem = path.file_stem()?.as_bytes();
    let dot = stem.iter().rposition(|&b| b == b'.')?;
    let (name, suffix) = (&stem[..dot], &stem[dot + 1..]);
    if name.is_empty() {
        return None;
    }
    let precision = VARIANTS
        .into_iter()
        .find(|p| p.name().as_bytes().eq_ignore_ascii_case(suffix))?;
    use std::os::unix::ffi::OsStrExt;
    let mut head = std::ffi::OsStr::from_bytes(name).to_os_string();
    head.push(".");
    head.push(EXTENSION);
    Some((path.with_file_name(head), precision))
}

/// The file a family's `precision` variant has by convention: `NAME.pt2`
/// for FP32, `NAME.bf16.pt2` beside it for BF16.
pub fn variant_path(head: &Path, precision: Precision) -> PathBuf {
    if precision == Precision::Fp32 {
        return head.to_path_buf();
    }
    let mut name = head
        .file_stem()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".{}.{EXTENSION}", precision.name()));
    head.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::cpuinfo::parse_cpuinfo;

    fn metadata(pairs: &[(&str, &str)]) -> Metadata {
        Metadata(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn cpu(flags: &str, arch_line: &str) -> CpuInfo {
        parse_cpuinfo(&format!(
            "processor\t: 0\n{arch_line}\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
        ))
    }

    fn target<'a>(cpu: &'a CpuInfo, machine: &'a str) -> Target<'a> {
        Target {
            cpu,
            machine,
            cuda_capabilities: &[],
        }
    }

    #[test]
    fn an_avx512_package_is_refused_on_an_avx2_cpu_with_both_sides_named() {
        let avx2 = cpu("fpu sse2 avx avx2 fma f16c lm", "vendor_id\t: GenuineIntel");
        let m = metadata(&[
            (keys::CPU_ISA, "AVX512 AVX512_VNNI"),
            (keys::MACHINE, "x86_64"),
            (keys::DEVICE_KEY, "cpu"),
        ]);
        let why = can_run(&m, &target(&avx2, "x86_64")).unwrap_err();
        assert!(matches!(why, CannotRun::MissingCpuFlags { .. }), "{why:?}");
        let why = why.to_string();
        assert!(why.contains("AVX512 AVX512_VNNI"), "{why}");
        assert!(why.contains("lacks avx512_vnni avx512bw"), "{why}");
        let ok = metadata(&[(keys::CPU_ISA, "AVX2"), (keys::MACHINE, "x86_64")]);
        assert_eq!(can_run(&ok, &target(&avx2, "x86_64")), Ok(()));
    }

    #[test]
    fn compiler_flags_add_what_the_isa_words_do_not_say() {
        // Inductor writes "AVX512" for a package compiled with -mavx512bf16
        // too, and "ASIMD" for SVE code: only the flags tell.
        let epyc = cpu(
            "avx2 fma f16c avx512f avx512dq avx512vl avx512bw avx512_vnni lm",
            "vendor_id\t: AuthenticAMD",
        );
        let m = metadata(&[
            (keys::CPU_ISA, "AVX512"),
            (
                keys::ARCH_FLAGS,
                "-mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma -mavx512bf16",
            ),
        ]);
        let why = can_run(&m, &target(&epyc, "x86_64"))
            .unwrap_err()
            .to_string();
        assert!(
            why.ends_with("--isa)") && why.contains("lacks avx512_bf16"),
            "{why}"
        );

        let a76 = parse_cpuinfo(
            "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0b\n\n",
        );
        let sve = metadata(&[
            (keys::CPU_ISA, "ASIMD"),
            (keys::MACHINE, "aarch64"),
            (
                keys::ARCH_FLAGS,
                "-march=armv8-a+sve+bf16 -msve-vector-bits=256",
            ),
        ]);
        let why = can_run(&sve, &target(&a76, "aarch64"))
            .unwrap_err()
            .to_string();
        assert!(why.contains("lacks bf16 sve"), "{why}");
    }

    #[test]
    fn another_machine_or_a_missing_gpu_is_named() {
        let x86 = cpu("avx2 fma f16c lm", "vendor_id\t: GenuineIntel");
        let arm = metadata(&[(keys::CPU_ISA, "ASIMD"), (keys::MACHINE, "aarch64")]);
        let why = can_run(&arm, &target(&x86, "x86_64")).unwrap_err();
        assert!(matches!(why, CannotRun::OtherMachine { .. }), "{why:?}");
        let why = why.to_string();
        assert!(why.contains("aarch64") && why.contains("x86_64"), "{why}");
        let cuda = metadata(&[
            (keys::DEVICE_KEY, "cuda"),
            (keys::COMPUTE_CAPABILITY, "86"),
            (keys::MACHINE, "x86_64"),
        ]);
        let why = can_run(&cuda, &target(&x86, "x86_64")).unwrap_err();
        assert!(matches!(why, CannotRun::NoCudaDevice { .. }), "{why:?}");
        let why = why.to_string();
        assert!(
            why.contains("8.6") && why.contains("no CUDA device"),
            "{why}"
        );
        let caps = ["7.5".to_string()];
        let turing = Target {
            cuda_capabilities: &caps,
            ..target(&x86, "x86_64")
        };
        let why = can_run(&cuda, &turing).unwrap_err();
        assert!(matches!(why, CannotRun::OtherCapability { .. }), "{why:?}");
        let why = why.to_string();
        assert!(why.contains("8.6") && why.contains("7.5"), "{why}");
        let caps = ["8.6".to_string()];
        let ampere = Target {
            cuda_capabilities: &caps,
            ..target(&x86, "x86_64")
        };
        assert_eq!(can_run(&cuda, &ampere), Ok(()));
    }

    #[test]
    fn unknown_isa_words_are_said_not_guessed() {
        let m = metadata(&[(keys::CPU_ISA, "ZVECTOR")]);
        let x86 = cpu("avx2", "vendor_id\t: GenuineIntel");
        assert_eq!(can_run(&m, &target(&x86, "x86_64")), Ok(()));
        assert!(unchecked_isa_note(&m).unwrap().contains("ZVECTOR"));
    }

    #[test]
    fn variants_name_their_family() {
        let (head, p) = variant_of(Path::new("/d/resnet.bf16.pt2")).unwrap();
        assert_eq!(
            (head.as_path(), p),
            (Path::new("/d/resnet.pt2"), Precision::Bf16)
        );
        assert_eq!(
            variant_of(Path::new("/d/a.b.INT8.pt2")).unwrap().0,
            Path::new("/d/a.b.pt2")
        );
        assert!(variant_of(Path::new("/d/resnet.pt2")).is_none());
        assert!(variant_of(Path::new("/d/resnet.fp32.pt2")).is_none());
        assert!(variant_of(Path::new("/d/.bf16.pt2")).is_none());
        assert!(variant_of(Path::new("/d/resnet.bf16.pt")).is_none());
        assert_eq!(
            variant_path(Path::new("/d/resnet.pt2"), Precision::Fp16),
            Path::new("/d/resnet.fp16.pt2")
        );
        assert_eq!(
            variant_path(Path::new("/d/resnet.pt2"), Precision::Fp32),
            Path::new("/d/resnet.pt2")
        );
    }

    #[test]
    fn a_non_zip_is_not_a_package() {
        let why = inspect(b"not a zip").unwrap_err();
        assert!(matches!(why, InspectError::NotZip(_)), "{why:?}");
        let why = why.to_string();
        assert!(
            why.starts_with("not an AOTInductor package: a .pt2 file is a zip archive, and"),
            "{why}"
        );
        assert!(why.contains("precisiond-export.py"), "{why}");
    }
}
