//! The progress messages for the supervisor, each followed by the report
//! so far (`protocol::Partial`).

use crate::context::ModelKind;
use crate::plan;
use crate::supervisor::send;
use precisiond_core::devices::Device;
use precisiond_core::precision::Precision;
use precisiond_core::protocol;
use precisiond_core::report::{Method, PrecisionResult, Report, Status};

pub struct Progress {
    done: usize,
    /// Steps known so far: an autocast or TensorRT result beside the
    /// planned one, or a linked TorchScript model, adds its own when it
    /// comes.
    pub total: usize,
    /// The kind of model being measured: it names the method of a step
    /// that has not said its own.
    pub kind: ModelKind,
}

impl Progress {
    pub fn new(total: usize, kind: ModelKind) -> Progress {
        Progress {
            done: 0,
            total,
            kind,
        }
    }

    /// Says that the step for `precision` on `device` starts, measured by
    /// `method` (the plan's own when None), and what the report holds so
    /// far: should this process die now, the supervisor still has every
    /// result finished before it.
    pub fn step(
        &mut self,
        device: Device,
        precision: Precision,
        method: Option<Method>,
        report: &Report,
    ) {
        self.done += 1;
        send(&protocol::WorkerMessage::Progress(protocol::Progress {
            device,
            precision,
            step: self.done,
            total: self.total,
        }));
        send(&protocol::WorkerMessage::Partial(Box::new(
            protocol::Partial {
                measuring: Some(self.measuring(device, precision, method)),
                report: report.clone(),
            },
        )));
    }

    /// The result the supervisor writes for the step under way should
    /// this process die during it.
    fn measuring(
        &self,
        device: Device,
        precision: Precision,
        method: Option<Method>,
    ) -> PrecisionResult {
        PrecisionResult::not_measured(
            device,
            precision,
            Status::Failed,
            method.unwrap_or_else(|| plan::nominal_method(device, precision, self.kind)),
            "the worker ended while measuring this precision".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_under_way_names_its_method_else_the_plans() {
        let progress = Progress::new(4, ModelKind::TorchScript);
        let int8 = progress.measuring(Device::Cpu, Precision::Int8, None);
        assert_eq!(int8.method, Method::StaticPtq);
        assert_eq!(int8.status, Status::Failed);
        assert_eq!(int8.device, Device::Cpu);
        let beside = progress.measuring(Device::Cuda(0), Precision::Fp16, Some(Method::Tensorrt));
        assert_eq!(beside.method, Method::Tensorrt);
        let family = Progress::new(4, ModelKind::AotiFamily);
        assert_eq!(
            family.measuring(Device::Cpu, Precision::Int8, None).method,
            Method::Aoti
        );
    }
}
