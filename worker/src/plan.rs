//! Which method serves which (device, precision), and what is not measured
//! at all: the one table of docs/design.md's "Precision methods", as code.

use crate::method::aoti::Aoti;
use crate::method::cast::Cast;
use crate::method::prequantized::Prequantized;
use crate::method::static_ptq::StaticPtq;
use crate::method::tensorrt::Tensorrt;
use crate::method::PrecisionMethod;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, Status};

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

/// The kind of model a job measures, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    TorchScript,
    /// A TorchScript model that calls `quantized::` operators.
    Prequantized,
    /// An AOTInductor family: one package per precision.
    AotiFamily,
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

/// A second result for `precision` on `device`, beside the planned one:
/// TensorRT's FP16/BF16 next to libtorch's on a CUDA device (added only
/// where TensorRT and an ONNX file are there).
pub fn comparison_for(
    device: Device,
    precision: Precision,
) -> Option<&'static dyn PrecisionMethod> {
    let cuda = matches!(device, Device::Cuda(_));
    (cuda && matches!(precision, Precision::Fp16 | Precision::Bf16)).then_some(&Tensorrt as _)
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
        assert!(comparison_for(gpu, Precision::Fp16).is_some());
        assert!(comparison_for(gpu, Precision::Int8).is_none());
        assert!(comparison_for(Device::Cpu, Precision::Bf16).is_none());
    }
}
