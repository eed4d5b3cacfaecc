//! `precisiond detect`: which precisions each device computes natively, and
//! whether libtorch really runs them fast.
//!
//! Two kinds of evidence are combined, and both are reported:
//! - the hardware's own description (CPU flags from `/proc/cpuinfo`, the
//!   CUDA compute capability from the driver), judged by the rules in
//!   [`rules`], which gives `native`;
//! - a short micro-benchmark ([`probe`]) in each floating-point precision
//!   against FP32 on the same device, which gives `probe_speedup_vs_fp32`
//!   and, together with `native`, `accelerated`.
//!
//! A flag can say "native" while libtorch's kernels do not use it (FP16 on
//! x86 CPUs with avx512_fp16: the probe shows it ~30x slower than FP32);
//! such a precision is reported with both facts.

pub mod baseline;
pub mod cpuinfo;
pub mod cuda;
pub mod jetson;
pub mod probe;
pub mod probe_cache;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use cpuinfo::{parse_cpuinfo, Arch, CpuInfo};
pub use rules::{cpu_verdicts, cuda_architecture, cuda_verdicts, PrecisionVerdicts, Verdict};

use crate::devices::Device;
use crate::precision::Precision;

/// Where the live CPU description comes from.
pub const LIVE_CPUINFO: &str = "/proc/cpuinfo";

/// Everything `detect` found: the CPU, each CUDA GPU (`cuda0`, `cuda1`, ...:
/// [`Device::slug`], a TOML table name cannot hold `cuda:0`)
/// and notes on what could not be looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// E.g. "no CUDA device found (libcuda.so.1 not present)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub cpu: CpuReport,
    /// Keyed "cuda0", "cuda1", ...; flattened so the TOML has top-level
    /// tables `[cuda0]`, `[cuda0.fp16]`, ... beside `[cpu]`.
    #[serde(flatten)]
    pub gpus: BTreeMap<String, GpuReport>,
    /// The energy sensors found on this machine, readable or not (live
    /// detection only: a capture describes another machine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub energy_sensors: Vec<crate::energy::SensorInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    pub model: String,
    /// "x86_64", "i686", "aarch64", "armv7l", "riscv64", ...
    pub arch: String,
    /// The precision-deciding flags (and the SIMD flags that give them
    /// context) that this CPU has; the full list is in /proc/cpuinfo.
    pub flags: Vec<String>,
    pub logical_cpus: usize,
    /// "/proc/cpuinfo" or the file given with `--cpuinfo`.
    pub source: String,
    /// "ran in M ms with N thread(s)", "skipped: --no-probe", "skipped: --cpuinfo given ...".
    pub probe: String,
    /// libtorch's CPU kernel level ("AVX512", "AVX2", "DEFAULT", ...). Only
    /// for the live CPU: libtorch describes this machine, not a saved capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libtorch_cpu_capability: Option<String>,
    /// libtorch's quantized engines ("x86", "fbgemm", "onednn", "qnnpack").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantized_engines: Vec<String>,
    /// The Jetson board, when this is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetson: Option<String>,
    pub fp32: Verdict,
    pub fp16: Verdict,
    pub bf16: Verdict,
    pub int8: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuReport {
    pub name: String,
    /// "8.7": a string, because a TOML float would turn "12.0" into 12.
    pub compute_capability: String,
    pub architecture: String,
    /// Shares memory with the CPU (Jetson).
    pub integrated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    pub probe: String,
    pub fp32: Verdict,
    pub fp16: Verdict,
    pub bf16: Verdict,
    pub int8: Verdict,
}

/// How `detect` works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectOptions {
    /// Read this saved /proc/cpuinfo instead of the live one. The probe is
    /// then skipped and no live GPU/Jetson is looked at: the report
    /// describes the captured machine, not this one.
    pub cpuinfo: Option<PathBuf>,
    /// Run the micro-benchmark (well under a second on the CPU).
    pub probe: bool,
    /// libtorch intra-op threads for the probe (the benchmark's thread count,
    /// so the probe sees the same kernels); restored afterwards.
    pub threads: Option<usize>,
}

const NO_INT8_PROBE: &str = "no int8 probe: int8 is measured by the full static-PTQ benchmark";

/// What only libtorch can say about this machine. The worker, which links
/// libtorch, implements it; the library (and the supervisor, which must not
/// load libtorch) only describes what to do with the answers.
pub trait Libtorch {
    /// libtorch's CPU kernel level ("AVX512", "AVX2", "DEFAULT", ...).
    fn cpu_capability(&self) -> Result<String, LibtorchError>;
    /// The quantized engines libtorch was built with.
    fn quantized_engines(&self) -> Result<Vec<String>, LibtorchError>;
    /// Whether this libtorch can run on CUDA device `index`.
    fn cuda_usable(&self, index: usize) -> bool;
    /// Runs the probe on the CPU (`None`) or a CUDA device, with `threads`
    /// intra-op threads when given (restored afterwards).
    fn probe(
        &self,
        cuda: Option<usize>,
        threads: Option<usize>,
    ) -> Result<probe::ProbeReport, probe::ProbeError>;
}

/// A libtorch call that failed, with libtorch's own message: it is
/// libtorch's to word, not ours to parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LibtorchError(pub String);

/// Why there is no hardware report.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The `--cpuinfo` capture cannot be read.
    #[error("reading cpuinfo file {}: {error}", path.display())]
    Cpuinfo {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("serialising the hardware report: {0}")]
    Serialise(#[from] toml::ser::Error),
}

/// Looks at the CPU and every CUDA GPU. Fails only when a `--cpuinfo` file
/// cannot be read; everything else (no GPU, no driver, a failing probe)
/// ends up in the report as a note or a reason.
pub fn detect(opts: &DetectOptions, torch: &dyn Libtorch) -> Result<Hardware, DetectError> {
    let mut notes = Vec::new();
    let live = opts.cpuinfo.is_none();

    let (text, source) = match &opts.cpuinfo {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|error| DetectError::Cpuinfo {
                path: path.clone(),
                error,
            })?,
            path.display().to_string(),
        ),
        None => match std::fs::read_to_string(LIVE_CPUINFO) {
            Ok(text) => (text, LIVE_CPUINFO.to_string()),
            Err(e) => {
                // Not Linux, or /proc not mounted: no flags, so every
                // precision but fp32 is judged not native; say why.
                notes.push(format!(
                    "cannot read {LIVE_CPUINFO} ({e}): CPU flags unknown"
                ));
                (String::new(), LIVE_CPUINFO.to_string())
            }
        },
    };
    let info = parse_cpuinfo(&text);
    let mut cpu = cpu_report(&info, source);

    if live {
        add_libtorch_facts(&mut cpu, torch);
        cpu.jetson = jetson::detect_jetson(Path::new("/")).or_else(|| {
            info.hardware
                .as_deref()
                .and_then(jetson::jetson_from_hardware_line)
        });
    } else {
        cpu.jetson = info
            .hardware
            .as_deref()
            .and_then(jetson::jetson_from_hardware_line);
    }

    cpu.probe = if !live {
        "skipped: --cpuinfo given (the probe would time this machine, not the one in the file)"
            .to_string()
    } else if !opts.probe {
        "skipped: --no-probe".to_string()
    } else {
        probe_cpu(&mut cpu, opts.threads, torch)
    };

    let mut gpus = BTreeMap::new();
    if live {
        let query = cuda::query();
        if let Some(note) = &query.note {
            notes.push(note.clone());
        }
        for dev in &query.devices {
            let mut gpu = gpu_report(dev, query.driver_version.clone());
            gpu.probe = if opts.probe {
                probe_gpu(&mut gpu, dev.index, opts.threads, torch)
            } else {
                "skipped: --no-probe".to_string()
            };
            gpus.insert(Device::Cuda(dev.index).slug(), gpu);
        }
    } else {
        notes.push("GPUs not queried: --cpuinfo describes another machine".to_string());
    }

    let energy_sensors = if live {
        crate::energy::find_all(&crate::energy::sysfs_root())
            .iter()
            .map(|s| s.info())
            .collect()
    } else {
        Vec::new()
    };
    Ok(Hardware {
        notes,
        cpu,
        gpus,
        energy_sensors,
    })
}

/// The CPU report from flags alone (no libtorch, no probe): pure, so the
/// tests can check every captured cpuinfo.
pub fn cpu_report(info: &CpuInfo, source: impl Into<String>) -> CpuReport {
    let v = cpu_verdicts(info);
    let relevant = cpuinfo::relevant_flags(info.arch);
    CpuReport {
        model: info.model.clone(),
        arch: info.arch.name(),
        flags: info
            .present(relevant)
            .into_iter()
            .map(str::to_string)
            .collect(),
        logical_cpus: info.logical_cpus,
        source: source.into(),
        probe: "not run".to_string(),
        libtorch_cpu_capability: None,
        quantized_engines: Vec::new(),
        jetson: None,
        fp32: v.fp32,
        fp16: v.fp16,
        bf16: v.bf16,
        int8: v.int8,
    }
}

/// The GPU report from the compute capability alone (no probe).
pub fn gpu_report(dev: &cuda::CudaDevice, driver_version: Option<String>) -> GpuReport {
    let v = cuda_verdicts(dev.major, dev.minor);
    GpuReport {
        name: dev.name.clone(),
        compute_capability: format!("{}.{}", dev.major, dev.minor),
        architecture: cuda_architecture(dev.major, dev.minor).to_string(),
        integrated: dev.integrated,
        memory_bytes: dev.total_memory,
        driver_version,
        probe: "not run".to_string(),
        fp32: v.fp32,
        fp16: v.fp16,
        bf16: v.bf16,
        int8: v.int8,
    }
}

/// What libtorch itself says about this CPU, added to the reasons it bears
/// on: its kernel level (fp32's SIMD width) and its quantized engines (the
/// int8 path).
fn add_libtorch_facts(cpu: &mut CpuReport, torch: &dyn Libtorch) {
    match torch.cpu_capability() {
        Ok(cap) => {
            cpu.fp32.reason = format!("{}; libtorch CPU capability: {cap}", cpu.fp32.reason);
            cpu.libtorch_cpu_capability = Some(cap);
        }
        Err(e) => log::warn!("libtorch CPU capability unknown: {e}"),
    }
    match torch.quantized_engines() {
        Ok(engines) => {
            let list = if engines.is_empty() {
                "none".to_string()
            } else {
                engines.join(", ")
            };
            cpu.int8.reason = format!("{}; libtorch quantized engines: {list}", cpu.int8.reason);
            cpu.quantized_engines = engines;
        }
        Err(e) => log::warn!("libtorch quantized engines unknown: {e}"),
    }
}

/// Runs the CPU probe and writes its outcome into the verdicts; returns
/// the `probe` line.
fn probe_cpu(cpu: &mut CpuReport, threads: Option<usize>, torch: &dyn Libtorch) -> String {
    let result = torch.probe(None, threads);
    apply_probe(
        &mut cpu.fp32,
        &mut cpu.fp16,
        &mut cpu.bf16,
        &mut cpu.int8,
        result,
    )
}

fn probe_gpu(
    gpu: &mut GpuReport,
    index: usize,
    threads: Option<usize>,
    torch: &dyn Libtorch,
) -> String {
    // libtorch may run without its CUDA part (see docs/design.md: the linker can
    // drop libtorch_cuda); the flags-based verdicts stand alone then.
    if !torch.cuda_usable(index) {
        return "skipped: libtorch in this binary cannot use CUDA (libtorch_cuda not loaded)"
            .to_string();
    }
    let result = torch.probe(Some(index), threads);
    apply_probe(
        &mut gpu.fp32,
        &mut gpu.fp16,
        &mut gpu.bf16,
        &mut gpu.int8,
        result,
    )
}

fn apply_probe(
    fp32: &mut Verdict,
    fp16: &mut Verdict,
    bf16: &mut Verdict,
    int8: &mut Verdict,
    result: Result<probe::ProbeReport, probe::ProbeError>,
) -> String {
    match result {
        Ok(r) => {
            fp32.accelerated = Some(true);
            fp32.probe_speedup_vs_fp32 = Some(1.0);
            fp32.probe_note = Some(format!(
                "GEMM {n}x{n}x{n}: {g:.3} ms; conv3x3 [1,{ci},{hw},{hw}]->{co}: {c:.3} ms; \
                 minimum of {k} call(s) each, interleaved",
                k = r.fp32_calls,
                n = probe::GEMM_N,
                ci = probe::CONV_IN,
                hw = probe::CONV_HW,
                co = probe::CONV_OUT,
                g = r.fp32.gemm_ms,
                c = r.fp32.conv_ms,
            ));
            probe::apply(fp16, Precision::Fp16, &r.fp32, &r.fp16);
            probe::apply(bf16, Precision::Bf16, &r.fp32, &r.bf16);
            int8.probe_note = Some(NO_INT8_PROBE.to_string());
            match &r.reused_from {
                None => format!("ran in {:.0} ms with {} thread(s)", r.wall_ms, r.threads),
                Some(file) => format!(
                    "ran in {:.0} ms with {} thread(s) earlier in this boot, with this libtorch; \
                     reused from {} (delete it to probe again)",
                    r.wall_ms,
                    r.threads,
                    file.display()
                ),
            }
        }
        Err(e) => {
            for v in [fp32, fp16, bf16, int8] {
                v.probe_note = Some(format!("probe failed: {e}"));
            }
            format!("failed: {e}")
        }
    }
}

impl CpuReport {
    /// The CPU's verdict on `precision`.
    pub fn verdict(&self, precision: Precision) -> &Verdict {
        match precision {
            Precision::Fp32 => &self.fp32,
            Precision::Fp16 => &self.fp16,
            Precision::Bf16 => &self.bf16,
            Precision::Int8 => &self.int8,
        }
    }
}

impl GpuReport {
    /// The GPU's verdict on `precision`.
    pub fn verdict(&self, precision: Precision) -> &Verdict {
        match precision {
            Precision::Fp32 => &self.fp32,
            Precision::Fp16 => &self.fp16,
            Precision::Bf16 => &self.bf16,
            Precision::Int8 => &self.int8,
        }
    }
}

impl Hardware {
    /// The verdict for `device` and `precision`; None for a CUDA device
    /// detection did not find.
    pub fn verdict(&self, device: Device, precision: Precision) -> Option<&Verdict> {
        match device {
            Device::Cpu => Some(self.cpu.verdict(precision)),
            Device::Cuda(_) => Some(self.gpus.get(&device.slug())?.verdict(precision)),
        }
    }

    /// The report of CUDA device `device`; None for the CPU or a device
    /// detection did not find.
    pub fn gpu(&self, device: Device) -> Option<&GpuReport> {
        match device {
            Device::Cpu => None,
            Device::Cuda(_) => self.gpus.get(&device.slug()),
        }
    }

    /// The CPU, then the CUDA devices in index order.
    pub fn devices(&self) -> Vec<Device> {
        let mut gpus: Vec<Device> = self
            .gpus
            .keys()
            .filter_map(|k| Device::from_slug(k))
            .filter(|d| *d != Device::Cpu)
            .collect();
        gpus.sort();
        std::iter::once(Device::Cpu).chain(gpus).collect()
    }

    /// The `--format toml` output: tables `cpu`, `cpu.fp16`, ..., `cuda0`, ...
    pub fn to_toml(&self) -> Result<String, DetectError> {
        Ok(toml::to_string(self)?)
    }
}

/// Times the full live detection (with probe when `probe` is set) and
/// returns it with its wall time, for logs and tests.
pub fn detect_timed(
    opts: &DetectOptions,
    torch: &dyn Libtorch,
) -> Result<(Hardware, std::time::Duration), DetectError> {
    let start = Instant::now();
    let hw = detect(opts, torch)?;
    Ok((hw, start.elapsed()))
}
