//! What a job measures: which devices and precisions, in which order
//! ([`Targets`]); which method serves which (device, precision), and what
//! is not measured at all: the one table of docs/design.md's "Precision
//! methods", as code.

use crate::context::ModelKind;
use crate::method::aoti::Aoti;
use crate::method::autocast::Autocast;
use crate::method::cast::Cast;
use crate::method::dynamic_ptq::DynamicPtq;
use crate::method::prequantized::Prequantized;
use crate::method::static_ptq::StaticPtq;
use crate::method::tensorrt::Tensorrt;
use crate::method::PrecisionMethod;
use precisiond_core::devices::{self, Device, DeviceRequest};
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, Status};
use std::path::Path;

/// The plan for one (device, precision).
pub enum Planned {
    Measure(&'static dyn PrecisionMethod),
    /// Not measured, and why.
    NotMeasured {
        status: Status,
        method: Method,
        reason: &'static str,
    },
}

/// The devices and precisions of a job, in the order they are measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// FP32 first, whatever the order asked for: the others' speedups need
    /// it; the rest in the order asked for.
    pub precisions: Vec<Precision>,
    /// The devices measured: the CPU first, then CUDA devices by index.
    pub devices: Vec<Device>,
    /// Devices asked for that libtorch does not see, and why: each gets a
    /// result per precision that says so.
    pub missing: Vec<(Device, String)>,
    /// Set where CUDA was asked for and libtorch sees none: why, for the
    /// report's notes.
    pub no_cuda: Option<String>,
}

impl Targets {
    /// What to measure of `precisions` on `requests` where libtorch sees
    /// `cuda_count` CUDA devices; `no_cuda_cause` says why it sees none.
    pub fn new(
        precisions: &[Precision],
        requests: &[DeviceRequest],
        cuda_count: usize,
        no_cuda_cause: &str,
    ) -> Targets {
        let mut ordered = precisions.to_vec();
        ordered.sort_by_key(|p| *p != Precision::Fp32);
        let resolved = devices::resolve(requests, cuda_count);
        let wants_cuda = requests.iter().any(|r| *r != DeviceRequest::Cpu);
        let missing = resolved
            .missing
            .iter()
            .map(|&device| {
                let why = if cuda_count == 0 {
                    format!(
                        "{device} was asked for, but libtorch sees no CUDA device: {no_cuda_cause}"
                    )
                } else {
                    format!(
                        "{device} was asked for, but libtorch sees {cuda_count} CUDA device(s) \
                         (cuda:0 to cuda:{})",
                        cuda_count - 1
                    )
                };
                (device, why)
            })
            .collect();
        Targets {
            precisions: ordered,
            devices: resolved.devices,
            missing,
            no_cuda: (cuda_count == 0 && wants_cuda).then(|| no_cuda_cause.to_owned()),
        }
    }

    /// The steps of one model: a precision on a device, measured or not.
    /// (The results beside the planned ones, autocast's and TensorRT's,
    /// add theirs as they come.)
    pub fn steps(&self) -> usize {
        (self.devices.len() + self.missing.len()) * self.precisions.len()
    }
}

/// What the settings file's `torchscript = "…"` asks of a model.
#[derive(Debug, PartialEq)]
pub enum Linked<'a> {
    /// An AOTInductor family's TorchScript file: measured after the
    /// packages, on the same inputs, and set beside them.
    Measure(&'a Path),
    /// Set for a model that is TorchScript already: the note says so.
    Ignored(String),
}

/// What to do with the TorchScript file `named` in the settings of a model
/// of `kind`; None where the settings name none.
pub fn linked(named: Option<&Path>, kind: ModelKind) -> Option<Linked<'_>> {
    let named = named?;
    Some(if kind == ModelKind::AotiFamily {
        Linked::Measure(named)
    } else {
        Linked::Ignored(format!(
            "`torchscript = {named:?}` in the settings file is for an AOTInductor family \
             (NAME.pt2); this model is TorchScript already, so it was ignored"
        ))
    })
}

/// How `precision` is measured on `device` for a model of `kind`.
pub fn method_for(device: Device, precision: Precision, kind: ModelKind) -> Planned {
    if kind == ModelKind::AotiFamily {
        return Planned::Measure(&Aoti);
    }
    let prequantized = kind == ModelKind::Prequantized;
    let cuda = matches!(device, Device::Cuda(_));
    match precision {
        Precision::Int8 if cuda && prequantized => Planned::NotMeasured {
            status: Status::Unsupported,
            method: Method::Prequantized,
            reason:
                "the model is already quantized with PyTorch's quantized:: operators, which run \
                     on the CPU only; see the cpu int8 result",
        },
        Precision::Int8 if cuda => Planned::Measure(&Tensorrt),
        Precision::Int8 if prequantized => Planned::Measure(&Prequantized),
        Precision::Int8 => Planned::Measure(&StaticPtq),
        _ if prequantized => Planned::NotMeasured {
            status: Status::Skipped,
            method: Method::Cast,
            reason:
                "the model is already quantized (it calls quantized:: operators): it runs only \
                     as int8, see the int8 result",
        },
        _ => Planned::Measure(&Cast),
    }
}

/// The results for `precision` on `device` beside the planned one, in the
/// order they are measured, each added where it applies to the model
/// (`PrecisionMethod::applies`):
/// - autocast's FP16/BF16 next to the cast, on every device (TorchScript
///   models: an AOTInductor package is compiled for its precision, a
///   prequantized model runs only as INT8);
/// - TensorRT's FP16/BF16 next to libtorch's on a CUDA device (where
///   TensorRT and an ONNX file are there);
/// - dynamic PTQ next to static PTQ for INT8 on the CPU (where the model's
///   compute is in linear layers: `method::dynamic_ptq`): static
///   quantization leaves recurrent layers to FP32 and refuses some models
///   outright, and for linear-heavy models (transformers, RNN heads)
///   dynamic quantization is often the faster and more accurate INT8; the
///   report keeps both, so the user sees which.
pub fn comparisons_for(device: Device, precision: Precision) -> Vec<&'static dyn PrecisionMethod> {
    match (device, precision) {
        (Device::Cuda(_), Precision::Fp16 | Precision::Bf16) => vec![&Autocast, &Tensorrt],
        (Device::Cpu, Precision::Fp16 | Precision::Bf16) => vec![&Autocast],
        (Device::Cpu, Precision::Int8) => vec![&DynamicPtq],
        _ => Vec::new(),
    }
}

/// The method a result names when it could not even be planned (its
/// device is missing) or when preparing it panicked.
pub fn nominal_method(device: Device, precision: Precision, kind: ModelKind) -> Method {
    if kind == ModelKind::AotiFamily {
        return Method::Aoti;
    }
    match (device, precision) {
        (Device::Cuda(_), Precision::Int8) => Method::Tensorrt,
        (Device::Cpu, Precision::Int8) => Method::StaticPtq,
        _ => Method::Cast,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(device: Device, precision: Precision, prequantized: bool) -> Method {
        let kind = if prequantized {
            ModelKind::Prequantized
        } else {
            ModelKind::TorchScript
        };
        match method_for(device, precision, kind) {
            Planned::Measure(m) => m.method(),
            Planned::NotMeasured { method, .. } => method,
        }
    }

    #[test]
    fn the_methods_follow_the_design_table() {
        let gpu = Device::Cuda(0);
        for p in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            assert_eq!(method(Device::Cpu, p, false), Method::Cast);
            assert_eq!(method(gpu, p, false), Method::Cast);
        }
        assert_eq!(
            method(Device::Cpu, Precision::Int8, false),
            Method::StaticPtq
        );
        assert_eq!(
            method(Device::Cpu, Precision::Int8, true),
            Method::Prequantized
        );
        assert_eq!(method(gpu, Precision::Int8, false), Method::Tensorrt);
        assert!(matches!(
            method_for(gpu, Precision::Int8, ModelKind::Prequantized),
            Planned::NotMeasured {
                status: Status::Unsupported,
                ..
            }
        ));
        assert!(matches!(
            method_for(Device::Cpu, Precision::Fp16, ModelKind::Prequantized),
            Planned::NotMeasured {
                status: Status::Skipped,
                ..
            }
        ));
        for p in Precision::ALL {
            for d in [Device::Cpu, gpu] {
                let Planned::Measure(m) = method_for(d, p, ModelKind::AotiFamily) else {
                    panic!("a family's every precision is measured from its package");
                };
                assert_eq!(m.method(), Method::Aoti);
            }
        }
        let besides =
            |d, p| -> Vec<Method> { comparisons_for(d, p).iter().map(|m| m.method()).collect() };
        for p in [Precision::Fp16, Precision::Bf16] {
            assert_eq!(besides(gpu, p), [Method::Autocast, Method::Tensorrt]);
            assert_eq!(besides(Device::Cpu, p), [Method::Autocast]);
        }
        assert!(besides(gpu, Precision::Int8).is_empty());
        assert!(besides(gpu, Precision::Fp32).is_empty());
        assert!(besides(Device::Cpu, Precision::Fp32).is_empty());
        assert_eq!(besides(Device::Cpu, Precision::Int8), [Method::DynamicPtq]);
    }

    #[test]
    fn fp32_is_measured_first_and_the_rest_in_the_order_asked() {
        use Precision::*;
        let t = Targets::new(&[Int8, Bf16, Fp32], &[DeviceRequest::Cpu], 0, "none");
        assert_eq!(t.precisions, [Fp32, Int8, Bf16]);
        assert_eq!(t.devices, [Device::Cpu]);
        assert!(t.missing.is_empty());
        assert_eq!(t.no_cuda, None, "only the CPU was asked for");
        assert_eq!(t.steps(), 3);
        // Without FP32 the order is the one asked for.
        let t = Targets::new(&[Bf16, Fp16], &[DeviceRequest::Cpu], 0, "none");
        assert_eq!(t.precisions, [Bf16, Fp16]);
    }

    #[test]
    fn every_device_asked_for_gets_its_steps_measured_or_not() {
        let all = Precision::ALL;
        // Two GPUs seen, cuda:3 asked for too: it is missing, with why.
        let asked = [DeviceRequest::Auto, DeviceRequest::Cuda(3)];
        let t = Targets::new(&all, &asked, 2, "unused");
        assert_eq!(t.devices, [Device::Cpu, Device::Cuda(0), Device::Cuda(1)]);
        assert_eq!(
            t.missing,
            [(
                Device::Cuda(3),
                "cuda:3 was asked for, but libtorch sees 2 CUDA device(s) (cuda:0 to cuda:1)"
                    .to_owned()
            )]
        );
        assert_eq!(t.no_cuda, None);
        assert_eq!(t.steps(), 4 * 4);
        // No GPU seen: "auto" measures the CPU and says why there is no
        // CUDA result; a GPU asked for by index is missing for that cause.
        let t = Targets::new(&all, &[DeviceRequest::Auto], 0, "no driver");
        assert_eq!(t.devices, [Device::Cpu]);
        assert_eq!(t.no_cuda.as_deref(), Some("no driver"));
        assert_eq!(t.steps(), 4);
        let t = Targets::new(&all, &[DeviceRequest::Cuda(0)], 0, "no driver");
        assert!(t.devices.is_empty());
        assert_eq!(
            t.missing,
            [(
                Device::Cuda(0),
                "cuda:0 was asked for, but libtorch sees no CUDA device: no driver".to_owned()
            )]
        );
        assert_eq!(t.steps(), 4);
    }

    #[test]
    fn a_linked_torchscript_file_is_measured_beside_a_family_only() {
        let named = Path::new("model.pt");
        assert_eq!(
            linked(Some(named), ModelKind::AotiFamily),
            Some(Linked::Measure(named))
        );
        for kind in [ModelKind::TorchScript, ModelKind::Prequantized] {
            let Some(Linked::Ignored(note)) = linked(Some(named), kind) else {
                panic!("a TorchScript model's link is ignored");
            };
            assert!(
                note.contains("\"model.pt\"") && note.contains("ignored"),
                "{note}"
            );
        }
        assert_eq!(linked(None, ModelKind::AotiFamily), None);
    }

    #[test]
    fn a_step_that_cannot_be_planned_names_the_method_that_would_have_served_it() {
        let gpu = Device::Cuda(0);
        for kind in [ModelKind::TorchScript, ModelKind::Prequantized] {
            assert_eq!(nominal_method(gpu, Precision::Int8, kind), Method::Tensorrt);
            assert_eq!(
                nominal_method(Device::Cpu, Precision::Int8, kind),
                Method::StaticPtq
            );
            assert_eq!(nominal_method(gpu, Precision::Bf16, kind), Method::Cast);
        }
        for p in Precision::ALL {
            assert_eq!(nominal_method(gpu, p, ModelKind::AotiFamily), Method::Aoti);
        }
    }
}
