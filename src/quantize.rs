//! INT8 on the CPU: static post-training quantization through libtorch's
//! graph-mode passes, or a model that is already quantized.

use crate::precision::Precision;
use crate::report::{Method, PrecisionResult};
use crate::worker::Context;

pub(crate) fn measure_int8(ctx: &Context) -> PrecisionResult {
    if ctx.has_quantized_ops {
        return ctx.time_and_compare(Precision::Int8, Method::Prequantized, ctx.fp32_module, ctx.inputs);
    }
    ctx.failed(Precision::Int8, Method::StaticPtq, "static PTQ is not built yet".into())
}
