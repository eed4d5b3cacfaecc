//! One measurement job, as the worker process runs it: load the model, build
//! its inputs, then for each device (the CPU, every CUDA device libtorch
//! sees, or those asked for) and precision prepare, warm up, time and
//! compare with FP32, and write the report.
//!
//! On a CUDA device FP32/FP16/BF16 are the model cast and moved there, timed
//! with the device synchronised around each call; INT8 is TensorRT (trtexec
//! on an ONNX file of the model, see precisiond::tensorrt) or `unsupported`.
//!
//! This is the only part of precisiond that loads libtorch; it runs in its
//! own process so that a crash inside libtorch ends only this job.

use crate::{model, quantize, shim};
use precisiond::accuracy::{self, Accuracy};
use precisiond::bench::{self, BenchConfig, LatencyStats, StopReason};
use precisiond::devices::{self, Device, DeviceRequest};
use precisiond::fsutil::{file_name, hex_sha256};
use precisiond::hardware::{DetectOptions, Hardware};
use precisiond::memory;
use precisiond::precision::Precision;
use precisiond::report::host_name;
use precisiond::report::{self, Method, ModelFacts, PrecisionResult, Report, RunFacts, Status};
use precisiond::settings::{self, InputSpec, ModelSettings};
use precisiond::tensorrt;
use std::cell::OnceCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::{CModule, Tensor};

/// Seed of the synthetic inputs: the same inputs for every precision and run.
const INPUT_SEED: i64 = 20_261_128;

#[derive(Debug, Clone)]
pub struct JobOptions {
    pub model: PathBuf,
    pub report: PathBuf,
    /// None: the settings file's list, else the default set.
    pub precisions: Option<Vec<Precision>>,
    pub threads: usize,
    /// None: `MODEL.toml` beside the model when it exists.
    pub settings: Option<PathBuf>,
    pub bench: BenchConfig,
    /// Folder for artefacts (quantized models); default `.precisiond/` beside the model.
    pub state_dir: Option<PathBuf>,
    pub probe: bool,
    /// None: the settings file's list, else "auto".
    pub devices: Option<Vec<DeviceRequest>>,
    /// TensorRT's trtexec; None: PATH, then /usr/src/tensorrt/bin.
    pub trtexec: Option<PathBuf>,
    /// Refuse a model or settings file that is a symbolic link.
    pub no_follow_symlinks: bool,
}

/// Reads a model or settings file; with `no_follow`, a symbolic link is
/// refused (O_NOFOLLOW), closing the gap between the daemon's check and
/// this read.
fn read_input(path: &Path, no_follow: bool) -> std::io::Result<Vec<u8>> {
    if !no_follow {
        return std::fs::read(path);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut precisiond::fsutil::open_regular(path)?, &mut bytes)?;
    Ok(bytes)
}

pub const DEFAULT_PRECISIONS: [Precision; 4] = Precision::ALL;

/// What a job ended with: a report that says ok, or one that says failed.
pub struct JobOutcome {
    pub report: Report,
}

/// Runs the job and writes its report. Errors before a report can be
/// written (the model file is missing or unreadable) come back as `Err`.
pub fn run_job(opts: &JobOptions) -> Result<JobOutcome, String> {
    let started = report::now();
    println!(
        "{}",
        precisiond::protocol::libtorch_line(&shim::libtorch_version())
    );
    let bytes = read_input(&opts.model, opts.no_follow_symlinks)
        .map_err(|e| format!("cannot read model {}: {e}", opts.model.display()))?;
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        status: Status::Ok,
        error: None,
        model: ModelFacts {
            file: file_name(&opts.model),
            sha256: hex_sha256(&bytes),
            bytes: bytes.len() as u64,
            format: "torchscript".into(),
            settings_file: None,
            settings_sha256: None,
        },
        run: RunFacts {
            started,
            finished: started,
            precisiond: env!("CARGO_PKG_VERSION").into(),
            libtorch: shim::libtorch_version(),
            threads: opts.threads,
            host: host_name(),
            max_seconds: opts.bench.max_seconds,
            target_rel_ci: opts.bench.target_rel_ci,
        },
        input_source: None,
        inputs: Vec::new(),
        notes: Vec::new(),
        hardware: None,
        results: Vec::new(),
    };

    tch::set_num_threads(opts.threads as i32);
    let _no_grad = tch::no_grad_guard();

    shim::collect_warnings();
    if let Err(error) = measure_all(opts, &bytes, &mut report) {
        report.status = Status::Failed;
        report.error = Some(error);
    }
    for warning in shim::take_warnings() {
        log::info!("libtorch warned: {warning}");
        report.notes.push(format!("libtorch warned: {warning}"));
    }
    report.run.finished = report::now();
    report
        .write(&opts.report)
        .map_err(|e| format!("cannot write report {}: {e}", opts.report.display()))?;
    Ok(JobOutcome { report })
}

fn measure_all(opts: &JobOptions, bytes: &[u8], report: &mut Report) -> Result<(), String> {
    let settings_path = opts
        .settings
        .clone()
        .unwrap_or_else(|| settings::default_path(&opts.model));
    let settings = if settings_path.exists() {
        let text = read_input(&settings_path, opts.no_follow_symlinks)
            .map_err(|e| format!("cannot read settings file {}: {e}", settings_path.display()))?;
        report.model.settings_file = Some(settings_path.display().to_string());
        report.model.settings_sha256 = Some(hex_sha256(&text));
        ModelSettings::parse(&String::from_utf8_lossy(&text))
            .map_err(|e| format!("settings file {}: {e}", settings_path.display()))?
    } else if opts.settings.is_some() {
        return Err(format!(
            "settings file {} does not exist; write it, for example:\n\n{}\n",
            settings_path.display(),
            settings::EXAMPLE
        ));
    } else {
        ModelSettings::default()
    };
    let mut bench_config = opts.bench;
    if let Some(seconds) = settings.max_seconds {
        bench_config.max_seconds = seconds;
        report.run.max_seconds = seconds;
    }
    let precisions = opts
        .precisions
        .clone()
        .or_else(|| settings.precisions.clone())
        .unwrap_or_else(|| DEFAULT_PRECISIONS.to_vec());
    let requests = opts
        .devices
        .clone()
        .or_else(|| settings.devices.clone())
        .unwrap_or_else(devices::default_requests);

    let hardware = precisiond::hardware::detect(
        &DetectOptions {
            cpuinfo: None,
            probe: opts.probe,
            threads: Some(opts.threads),
        },
        &crate::probe::LinkedLibtorch,
    )
    .map_err(|e| format!("hardware detection failed: {e:#}"))?;
    report.hardware = Some(hardware.clone());

    let fp32_module = model::load(&opts.model, bytes)?;
    let info = shim::module_info(&opts.model).map_err(|e| model::clean_torch_error(&e))?;

    let specs: Vec<InputSpec> = if settings.inputs.is_empty() {
        report.input_source = Some("inferred".into());
        vec![model::infer_input(
            &fp32_module,
            info.num_required,
            &settings_path,
        )?]
    } else {
        report.input_source = Some("settings".into());
        let given = settings.inputs.len();
        if given < info.num_required || given > info.num_inputs {
            return Err(format!(
                "{} describes {given} inputs but the model's forward() takes {}",
                settings_path.display(),
                if info.num_required == info.num_inputs {
                    info.num_inputs.to_string()
                } else {
                    format!("{} to {}", info.num_required, info.num_inputs)
                }
            ));
        }
        settings.inputs.clone()
    };
    report.inputs = specs.clone();
    let inputs = model::synthetic_inputs(&specs, INPUT_SEED);

    // The FP32 reference: also the check that these inputs fit the model.
    let reference = model::forward(&fp32_module, &inputs).map_err(|e| {
        let shapes: Vec<String> = specs.iter().map(ToString::to_string).collect();
        format!(
            "the model's forward() failed on inputs {} ({}): {e}. If these are not the model's \
             inputs, describe them in {}, for example:\n\n{}\n",
            shapes.join(", "),
            report.input_source.as_deref().unwrap_or_default(),
            settings_path.display(),
            settings::EXAMPLE
        )
    })?;
    let reference = model::output_tensors(&reference);
    if reference.is_empty() {
        return Err(
            "the model's forward() returned no tensors: there is nothing to compare".into(),
        );
    }

    // Which devices: what was asked for, against what libtorch sees.
    let cuda_count = usable_cuda_devices();
    let resolved = devices::resolve(&requests, cuda_count);
    let wants_cuda = requests.iter().any(|r| *r != DeviceRequest::Cpu);
    if cuda_count == 0 && wants_cuda {
        report.notes.push(format!(
            "{}: the report has no CUDA results",
            no_cuda_cause(&hardware)
        ));
    }

    let trtexec = OnceCell::new();
    let cpu = Context {
        opts,
        bytes,
        hardware: &hardware,
        bench: bench_config,
        inputs: &inputs,
        reference: &reference,
        fp32_module: &fp32_module,
        has_quantized_ops: info.has_quantized_ops,
        settings: &settings,
        settings_path: &settings_path,
        specs: &specs,
        device: Device::Cpu,
        trtexec: &trtexec,
    };
    // FP32 first, whatever the order asked for: the others' speedups need it.
    let mut ordered = precisions.clone();
    ordered.sort_by_key(|p| *p != Precision::Fp32);
    let mut progress = Progress {
        done: 0,
        total: (resolved.devices.len() + resolved.missing.len()) * ordered.len(),
    };
    for device in &resolved.devices {
        match device {
            Device::Cpu => cpu.measure_device(&ordered, &mut progress, report),
            Device::Cuda(index) => {
                // The inputs move to the device once; every precision casts
                // them there.
                let moved = panic::catch_unwind(AssertUnwindSafe(|| {
                    inputs
                        .iter()
                        .map(|t| t.f_to_device(tch::Device::Cuda(*index)))
                        .collect::<Result<Vec<Tensor>, _>>()
                }));
                match moved {
                    Ok(Ok(cuda_inputs)) => {
                        let ctx = Context {
                            device: *device,
                            inputs: &cuda_inputs,
                            ..cpu
                        };
                        ctx.measure_device(&ordered, &mut progress, report);
                    }
                    Ok(Err(e)) => cpu.fail_device(
                        *device,
                        &ordered,
                        &mut progress,
                        report,
                        &format!(
                            "cannot move the inputs to {device}: {}",
                            model::clean_torch_error(&e.to_string())
                        ),
                    ),
                    Err(payload) => cpu.fail_device(
                        *device,
                        &ordered,
                        &mut progress,
                        report,
                        &format!(
                            "cannot move the inputs to {device}: {}",
                            panic_message(&payload)
                        ),
                    ),
                }
            }
        }
    }
    for device in &resolved.missing {
        let why = if cuda_count == 0 {
            format!(
                "{device} was asked for, but libtorch sees no CUDA device: {}",
                no_cuda_cause(&hardware)
            )
        } else {
            format!(
                "{device} was asked for, but libtorch sees {cuda_count} CUDA device(s) (cuda:0 to cuda:{})",
                cuda_count - 1
            )
        };
        for &precision in &ordered {
            progress.step(*device, precision);
            let method = if precision == Precision::Int8 {
                Method::Tensorrt
            } else {
                Method::Cast
            };
            report.results.push(PrecisionResult::not_measured(
                &device.name(),
                precision,
                Status::Unsupported,
                method,
                why.clone(),
            ));
        }
    }
    Ok(())
}

/// CUDA devices this libtorch can run on: none when it has no CUDA (a
/// CPU-only build, libtorch_cuda not loaded) or the machine has no GPU.
fn usable_cuda_devices() -> usize {
    if tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

/// Why there is no CUDA device, in the words of the hardware detection.
fn no_cuda_cause(hardware: &Hardware) -> String {
    if hardware.gpus.is_empty() {
        hardware
            .notes
            .iter()
            .find(|n| n.contains("CUDA"))
            .cloned()
            .unwrap_or_else(|| "no CUDA device found".to_owned())
    } else {
        format!(
            "the CUDA driver sees {} GPU(s), but this libtorch cannot use CUDA (a CPU-only \
             libtorch, or libtorch_cuda not loaded)",
            hardware.gpus.len()
        )
    }
}

/// The `PROGRESS device precision i/n` lines for the supervisor.
struct Progress {
    done: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, device: Device, precision: Precision) {
        self.done += 1;
        progress(&device.name(), precision, self.done, self.total);
    }
}

/// Peak host and device memory of one precision: started before it is
/// prepared, read after it is timed.
struct MemoryWindow {
    rss_scope: memory::PeakScope,
    /// The CUDA allocator's state when the window started, or why it is unknown.
    cuda: Option<Result<shim::CudaMemory, String>>,
}

impl MemoryWindow {
    fn start(device: Device) -> MemoryWindow {
        let cuda = match device {
            Device::Cpu => None,
            Device::Cuda(i) => {
                Some(shim::cuda_start_memory_window(i).and_then(|()| shim::cuda_memory(i)))
            }
        };
        MemoryWindow {
            rss_scope: memory::reset_peak_rss(),
            cuda,
        }
    }

    /// Writes the peaks into `result`, when it measured something here
    /// (TensorRT runs in trtexec's process: its memory is not the worker's).
    fn finish(self, device: Device, result: &mut PrecisionResult) {
        if result.status != Status::Ok || result.method == Method::Tensorrt {
            return;
        }
        result.peak_host_rss_bytes = memory::peak_rss_bytes();
        if self.rss_scope == memory::PeakScope::SinceStart {
            result.notes.push(memory::SINCE_START_NOTE.to_owned());
        }
        let Device::Cuda(i) = device else {
            return;
        };
        match self
            .cuda
            .map(|start| start.and_then(|s| shim::cuda_memory(i).map(|end| (s, end))))
        {
            Some(Ok((start, end))) => {
                result.peak_device_memory_bytes =
                    Some(end.peak_allocated.saturating_sub(start.allocated));
                result.peak_device_reserved_bytes =
                    Some(end.peak_reserved.saturating_sub(start.reserved));
                result.notes.push(format!(
                    "peak device memory from libtorch's CUDA caching allocator: bytes handed out (and \
                     reserved from the driver) on top of the {} bytes already allocated when this \
                     precision started",
                    start.allocated
                ));
            }
            Some(Err(e)) => result.notes.push(format!(
                "peak device memory unknown: libtorch's CUDA allocator statistics failed: {e}"
            )),
            None => {}
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) opts: &'a JobOptions,
    pub(crate) bytes: &'a [u8],
    pub(crate) hardware: &'a Hardware,
    pub(crate) bench: BenchConfig,
    /// The synthetic inputs, on `device`.
    pub(crate) inputs: &'a [Tensor],
    /// FP32's outputs on the CPU: every device and precision is compared with them.
    pub(crate) reference: &'a [Tensor],
    /// The model as loaded, on the CPU.
    pub(crate) fp32_module: &'a CModule,
    pub(crate) has_quantized_ops: bool,
    pub(crate) settings: &'a ModelSettings,
    pub(crate) settings_path: &'a Path,
    pub(crate) specs: &'a [InputSpec],
    pub(crate) device: Device,
    /// trtexec, looked for once, when a CUDA device first needs it.
    pub(crate) trtexec: &'a OnceCell<Result<tensorrt::Trtexec, String>>,
}

impl Context<'_> {
    fn device_name(&self) -> String {
        self.device.name()
    }

    fn tch_device(&self) -> tch::Device {
        match self.device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        }
    }

    /// Every precision on this context's device, FP32 first; speedups are
    /// against this device's FP32.
    fn measure_device(&self, ordered: &[Precision], progress: &mut Progress, report: &mut Report) {
        let mut fp32_median = None;
        for &precision in ordered {
            progress.step(self.device, precision);
            let window = MemoryWindow::start(self.device);
            let mut result = self.measure_guarded(precision);
            window.finish(self.device, &mut result);
            let mut extra = Vec::new();
            // TensorRT FP16/BF16 beside libtorch's, for comparison, where
            // TensorRT and an ONNX file are there.
            if matches!(self.device, Device::Cuda(_))
                && matches!(precision, Precision::Fp16 | Precision::Bf16)
                && self.tensorrt_present()
            {
                progress.total += 1;
                progress.step(self.device, precision);
                extra.extend(self.tensorrt_result(precision, false));
            }
            for r in std::iter::once(&mut result).chain(extra.iter_mut()) {
                if precision == Precision::Fp32 && r.method != Method::Tensorrt {
                    fp32_median = r.latency_ms.as_ref().map(|l| l.median);
                } else if let (Some(base), Some(lat)) = (fp32_median, &r.latency_ms) {
                    r.speedup_vs_fp32 = Some(base / lat.median);
                    if r.method == Method::Tensorrt {
                        r.notes.push(format!(
                            "speedup_vs_fp32 compares TensorRT's GPU compute time with libtorch's FP32 \
                             time on {}",
                            self.device_name()
                        ));
                    }
                }
            }
            report.results.push(result);
            report.results.extend(extra);
        }
    }

    /// A result for every precision on `device`, which could not be set up.
    fn fail_device(
        &self,
        device: Device,
        ordered: &[Precision],
        progress: &mut Progress,
        report: &mut Report,
        why: &str,
    ) {
        for &precision in ordered {
            progress.step(device, precision);
            report.results.push(PrecisionResult::not_measured(
                &device.name(),
                precision,
                Status::Failed,
                Method::Cast,
                why.to_owned(),
            ));
        }
    }

    /// [`Context::measure`], with a libtorch panic turned into a failed result.
    fn measure_guarded(&self, precision: Precision) -> PrecisionResult {
        let method = match (self.device, precision) {
            (Device::Cuda(_), Precision::Int8) => Method::Tensorrt,
            (Device::Cpu, Precision::Int8) => Method::StaticPtq,
            _ => Method::Cast,
        };
        let mut result = match panic::catch_unwind(AssertUnwindSafe(|| self.measure(precision))) {
            Ok(result) => result,
            Err(payload) => self.failed(
                precision,
                method,
                format!("libtorch failed: {}", panic_message(&payload)),
            ),
        };
        // BF16 below compute capability 8.0 runs only where libtorch allows it.
        if let Device::Cuda(_) = self.device {
            let native = self
                .hardware
                .verdict(&self.device.hardware_key(), precision.name())
                .is_none_or(|v| v.native);
            if precision == Precision::Bf16 && !native && result.status == Status::Failed {
                result.status = Status::Unsupported;
                result.reason = format!(
                    "libtorch does not run bf16 on this GPU, which has no BF16 arithmetic: {}",
                    result.reason
                );
            }
        }
        result
    }

    fn measure(&self, precision: Precision) -> PrecisionResult {
        let key = self.device.hardware_key();
        let verdict = self.hardware.verdict(&key, precision.name());
        let cuda = matches!(self.device, Device::Cuda(_));
        let mut result = match precision {
            Precision::Int8 if cuda && self.has_quantized_ops => self.unsupported(
                precision,
                Method::Prequantized,
                "the model is already quantized with PyTorch's quantized:: operators, which run on \
                 the CPU only; see the cpu int8 result"
                    .into(),
            ),
            Precision::Int8 if cuda => self
                .tensorrt_result(precision, true)
                .expect("int8 always gets a TensorRT result"),
            Precision::Int8 => quantize::measure_int8(self),
            _ if self.has_quantized_ops => self.not_measured(
                precision,
                Status::Skipped,
                Method::Cast,
                "the model is already quantized (it calls quantized:: operators): it runs only as \
                 int8, see the int8 result"
                    .into(),
            ),
            _ => self.measure_cast(precision),
        };
        if let Some(v) = verdict {
            result.native = v.native;
            result.accelerated = v.accelerated;
            let what = if cuda { "GPU" } else { "CPU" };
            if !v.native && result.status == Status::Ok {
                result.notes.push(format!(
                    "EMULATED: this {what} has no {precision} arithmetic ({}); do not plan a deployment on this timing",
                    v.reason
                ));
            } else if v.accelerated == Some(false) && result.status == Status::Ok {
                result
                    .notes
                    .push(format!("not accelerated here: {}", v.reason));
            }
        }
        result
    }

    /// trtexec, looked for once per job.
    fn trtexec(&self) -> &Result<tensorrt::Trtexec, String> {
        self.trtexec.get_or_init(|| {
            let found = tensorrt::find(
                self.opts.trtexec.as_deref(),
                std::env::var_os("PATH").as_deref(),
            );
            match &found {
                Ok(t) => log::info!("TensorRT {} at {}", t.version, t.path.display()),
                Err(e) => log::info!("no TensorRT: {e}"),
            }
            found
        })
    }

    /// trtexec is here and the settings name an ONNX file or one lies
    /// beside the model: TensorRT results are worth adding.
    fn tensorrt_present(&self) -> bool {
        self.trtexec().is_ok()
            && !matches!(
                tensorrt::onnx_for(
                    &self.opts.model,
                    self.settings.onnx.as_deref(),
                    self.settings_path
                ),
                Ok(None)
            )
    }

    /// A TensorRT result for `precision` on this CUDA device. Without
    /// trtexec or an ONNX file: for int8 (`required`) an `unsupported`
    /// result that says so, for fp16/bf16 none (libtorch's cast result
    /// stands alone).
    fn tensorrt_result(&self, precision: Precision, required: bool) -> Option<PrecisionResult> {
        let Device::Cuda(index) = self.device else {
            return None;
        };
        let cpu_only = "PyTorch's quantized operators are CPU-only";
        let trt = match self.trtexec() {
            Ok(t) => t,
            Err(why) => {
                return required
                    .then(|| self.unsupported(precision, Method::Tensorrt, why.clone()));
            }
        };
        let onnx = match tensorrt::onnx_for(
            &self.opts.model,
            self.settings.onnx.as_deref(),
            self.settings_path,
        ) {
            Ok(Some(onnx)) => onnx,
            Ok(None) => {
                let name = self.opts.model.with_extension("onnx");
                return required.then(|| {
                    self.unsupported(
                        precision,
                        Method::Tensorrt,
                        format!(
                            "TensorRT {} is here ({}), but there is no ONNX file of this model: export \
                             one to {} (torch.onnx.export) or name it in the settings (onnx = \"...\"); \
                             {cpu_only}",
                            trt.version,
                            trt.path.display(),
                            name.display()
                        ),
                    )
                });
            }
            Err(why) if precision == Precision::Int8 => {
                return Some(self.unsupported(
                    precision,
                    Method::Tensorrt,
                    format!("{why}; {cpu_only}"),
                ));
            }
            Err(why) => return Some(self.unsupported(precision, Method::Tensorrt, why)),
        };
        let gpu = self
            .hardware
            .gpus
            .get(&self.device.hardware_key())
            .map(|g| format!("{} ({})", g.name, g.compute_capability))
            .unwrap_or_else(|| self.device.hardware_key());
        let relative = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.settings_path
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join(p)
            }
        };
        let cache = self
            .settings
            .tensorrt_calibration_cache
            .as_deref()
            .map(relative);
        let samples = self.settings.calibration.as_ref().map(|c| relative(&c.dir));
        let state = state_dir(self.opts);
        let batch = self
            .inputs
            .first()
            .and_then(|t| t.size().first().copied())
            .unwrap_or(1);
        let request = tensorrt::Request {
            trtexec: trt,
            onnx: &onnx,
            precision,
            device_index: index,
            gpu,
            state_dir: &state,
            calibration_cache: cache.as_deref(),
            calibration_samples: samples.as_deref(),
            max_seconds: self.bench.max_seconds,
            batch,
            build_timeout: TENSORRT_BUILD_TIMEOUT,
        };
        let mut result = tensorrt::measure(&request);
        if let Some(v) = self
            .hardware
            .verdict(&self.device.hardware_key(), precision.name())
        {
            result.native = v.native;
        }
        Some(result)
    }

    fn measure_cast(&self, precision: Precision) -> PrecisionResult {
        let kind = model::cast_kind(precision).expect("cast precisions have a kind");
        // On the CPU, FP32 is the model as loaded; everything else is a
        // fresh copy cast (and moved) inside this precision's memory window.
        let module = if precision == Precision::Fp32 && self.device == Device::Cpu {
            None
        } else {
            match model::load(&self.opts.model, self.bytes) {
                // tch's `to` panics on a libtorch error; `measure_guarded`
                // turns a panic into a failed result.
                Ok(mut m) => {
                    m.to(self.tch_device(), kind, false);
                    Some(m)
                }
                Err(e) => return self.failed(precision, Method::Cast, e),
            }
        };
        let module = module.as_ref().unwrap_or(self.fp32_module);
        let inputs = model::cast_inputs(self.inputs, kind);
        self.time_and_compare(precision, Method::Cast, module, &inputs)
    }

    fn not_measured(
        &self,
        precision: Precision,
        status: Status,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        PrecisionResult::not_measured(&self.device_name(), precision, status, method, reason)
    }

    pub(crate) fn failed(
        &self,
        precision: Precision,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        self.not_measured(precision, Status::Failed, method, reason)
    }

    pub(crate) fn unsupported(
        &self,
        precision: Precision,
        method: Method,
        reason: String,
    ) -> PrecisionResult {
        self.not_measured(precision, Status::Unsupported, method, reason)
    }

    /// Times `module` on `inputs` and compares its outputs with FP32's (on
    /// the CPU; on a GPU FP32 itself is compared too: cuDNN may use TF32).
    pub(crate) fn time_and_compare(
        &self,
        precision: Precision,
        method: Method,
        module: &CModule,
        inputs: &[Tensor],
    ) -> PrecisionResult {
        let outputs = match model::forward(module, inputs) {
            Ok(out) => model::output_tensors(&out),
            Err(e) => {
                return self.failed(
                    precision,
                    method,
                    format!("forward() failed in {precision}: {e}"),
                )
            }
        };
        let mut result = self.time_module(precision, method, module, inputs);
        if result.latency_ms.is_some()
            && (precision != Precision::Fp32 || self.device != Device::Cpu)
        {
            result.accuracy = Some(compare_outputs(self.reference, &outputs));
            if precision == Precision::Fp32 {
                result.notes.push(
                    "accuracy against FP32 on the CPU: libtorch lets cuDNN use TF32 for \
                     convolutions on compute capability 8.0 and newer, which shows here"
                        .into(),
                );
            }
        }
        result
    }

    /// Warms up and times `module` on `inputs`. On a CUDA device the device
    /// is synchronised before the first call and after each one, so every
    /// time covers the kernels' completion, not their launch alone.
    pub(crate) fn time_module(
        &self,
        precision: Precision,
        method: Method,
        module: &CModule,
        inputs: &[Tensor],
    ) -> PrecisionResult {
        let cuda = match self.device {
            Device::Cuda(i) => Some(i as i64),
            Device::Cpu => None,
        };
        if let Some(i) = cuda {
            tch::Cuda::synchronize(i);
        }
        let call = || {
            model::forward(module, inputs).map(drop)?;
            if let Some(i) = cuda {
                tch::Cuda::synchronize(i);
            }
            Ok::<(), String>(())
        };
        let measurement = match bench::measure(&self.bench, call) {
            Ok(m) => m,
            Err(e) => {
                return self.failed(
                    precision,
                    method,
                    format!("forward() failed in {precision}: {e}"),
                )
            }
        };
        let mut result = self.not_measured(precision, Status::Ok, method, String::new());
        if cuda.is_some() {
            result.timing = Some(CUDA_TIMING.to_owned());
        }
        let stats =
            LatencyStats::from_samples(&measurement.samples_ms).expect("at least one timed call");
        let batch = self
            .inputs
            .first()
            .and_then(|t| t.size().first().copied())
            .unwrap_or(1)
            .max(1);
        result.throughput_per_s = Some(batch as f64 * 1e3 / stats.median);
        result.warmup_iterations = Some(measurement.warmup_iterations);
        result.stop_reason = Some(measurement.stop_reason);
        result.median_rel_ci = bench::median_relative_ci(&measurement.samples_ms);
        if measurement.stop_reason == StopReason::TimeBudget
            && stats.iterations < self.bench.min_iterations
        {
            result.notes.push(format!(
                "only {} timed iteration(s) fitted in the {} s budget (one call takes about {:.0} ms): \
                 the statistics are rough; raise --max-seconds for more",
                stats.iterations, self.bench.max_seconds, stats.median
            ));
        }
        result.latency_ms = Some(stats);
        result
    }
}

/// How CUDA timings are taken, for the report.
const CUDA_TIMING: &str = "host clock around each forward() call, with the CUDA device \
     synchronised (torch::cuda::synchronize) before the first call and after each one";

/// Longest a TensorRT engine build may take (large models on a Jetson take
/// minutes); the worker's own time limit still applies.
const TENSORRT_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// The state folder: `--state-dir`, else `.precisiond/` beside the model.
fn state_dir(opts: &JobOptions) -> PathBuf {
    opts.state_dir.clone().unwrap_or_else(|| {
        opts.model
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(".precisiond")
    })
}

/// Accuracy of `outputs` against the FP32 `reference`, output by output.
pub fn compare_outputs(reference: &[Tensor], outputs: &[Tensor]) -> Accuracy {
    if reference.len() != outputs.len() {
        let mut acc = Accuracy::default();
        let why = format!(
            "the model returned {} tensors, FP32 returned {}",
            outputs.len(),
            reference.len()
        );
        for metric in ["cosine", "max_abs_error", "sqnr_db"] {
            acc.worst.why_absent.insert(metric.into(), why.clone());
        }
        return acc;
    }
    let mut per_output = Vec::new();
    let mut top1 = None;
    for (index, (r, o)) in reference.iter().zip(outputs).enumerate() {
        match (model::to_f64_vec(r), model::to_f64_vec(o)) {
            (Ok(rv), Ok(ov)) => {
                if index == 0 && r.dim() == 2 {
                    top1 = accuracy::top1_agreement(&rv, &ov, r.size()[1] as usize);
                }
                per_output.push(accuracy::compare_values(&rv, &ov));
            }
            (Err(e), _) | (_, Err(e)) => {
                let mut acc = accuracy::OutputAccuracy::default();
                acc.why_absent
                    .insert("cosine".into(), format!("cannot read the output: {e}"));
                per_output.push(acc);
            }
        }
    }
    accuracy::combine(per_output, top1)
}

/// A line on stdout for the supervisor: which precision is being measured.
fn progress(device: &str, precision: Precision, index: usize, total: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        precisiond::protocol::progress_line(device, precision.name(), index, total)
    );
    let _ = out.flush();
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown error".into());
    model::clean_torch_error(&text)
}
