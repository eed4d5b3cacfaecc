//! Every precision of an AOTInductor family: the package compiled for that
//! precision, run as it is (nothing is cast or quantized here: the
//! precision is what the package was compiled for). Which package stands
//! for which precision, and whether this machine can run it, was settled
//! when the family was read (`crate::family`).

use super::{Comparison, ModuleRef, PrecisionMethod, Prepared, Runnable};
use crate::context::Context;
use crate::{family, model};
use precisiond_core::aoti;
use precisiond_core::precision::Precision;
use precisiond_core::report::{Method, PrecisionResult, Status};

pub struct Aoti;

impl PrecisionMethod for Aoti {
    fn method(&self) -> Method {
        Method::Aoti
    }

    #[allow(clippy::result_large_err)]
    fn prepare<'a>(
        &self,
        ctx: &Context<'a>,
        precision: Precision,
    ) -> Result<Prepared<'a>, PrecisionResult> {
        let fam = ctx
            .model
            .family
            .as_ref()
            .expect("the aoti method is planned for families only");
        let Some(variant) = fam.variant(precision) else {
            let wanted = fam
                .looked_for
                .get(&precision)
                .map(|p| precisiond_core::fsutil::file_name(p))
                .unwrap_or_else(|| format!("NAME.{precision}.pt2"));
            return Err(ctx.result(
                precision,
                Status::Skipped,
                Method::Aoti,
                format!(
                    "no {precision} package in this family: {wanted} is not beside {}; {}",
                    fam.head.file,
                    aoti::HOW_TO_MAKE
                ),
            ));
        };
        let here = if ctx.is_cuda() { "cuda" } else { "cpu" };
        if variant.device_key() != here {
            return Err(ctx.unsupported(
                precision,
                Method::Aoti,
                format!(
                    "{} was compiled for {}, not for {}: a package runs only on the kind of \
                     device it was compiled for",
                    variant.file,
                    variant.device_key(),
                    ctx.device.name()
                ),
            ));
        }
        if let Err(why) = &variant.runnable {
            return Err(ctx.unsupported(
                precision,
                Method::Aoti,
                format!("{}: {why}", variant.file),
            ));
        }
        let mut result = ctx.result(precision, Status::Ok, Method::Aoti, String::new());
        result.package = Some(variant.facts());
        result
            .notes
            .extend(aoti::unchecked_isa_note(&variant.metadata));
        if !ctx.is_cuda() {
            result
                .notes
                .extend(compiled_without_arithmetic(ctx, variant, precision));
        }
        // FP32's package is the one the reference came from, on this kind
        // of device: it is the reference itself.
        if precision == Precision::Fp32 {
            return Ok(Prepared::Module(Runnable {
                module: ModuleRef::Borrowed(ctx.model.module.as_ref()),
                inputs: ctx.inputs.iter().map(tch::Tensor::shallow_clone).collect(),
                comparison: Comparison::None,
                result,
            }));
        }
        let package = family::load(variant, &ctx.model.state_dir)
            .map_err(|e| ctx.failed(precision, Method::Aoti, e.to_string()))?;
        // A BF16 or FP16 package was exported with inputs of its type;
        // INT8's (PT2E quantization) takes FP32 inputs and quantizes inside.
        let inputs = match precision {
            Precision::Bf16 | Precision::Fp16 => {
                model::cast_inputs(ctx.inputs, model::cast_kind(precision).expect("float"))
            }
            _ => ctx.inputs.iter().map(tch::Tensor::shallow_clone).collect(),
        };
        Ok(Prepared::Module(Runnable {
            module: ModuleRef::Owned(Box::new(package)),
            inputs,
            comparison: Comparison::Reference,
            result,
        }))
    }
}

/// Where this CPU has arithmetic for `precision` but the package's own
/// kernels were compiled for an instruction set without it (an AVX2
/// package on an AVX-512 BF16 CPU): said, because then only the libtorch
/// kernels the package calls (convolutions and matrix products, through
/// oneDNN) use that arithmetic, and Inductor's generated kernels convert.
fn compiled_without_arithmetic(
    ctx: &Context,
    variant: &crate::family::Variant,
    precision: Precision,
) -> Option<String> {
    let arithmetic: &[&str] = match precision {
        Precision::Bf16 => &["avx512_bf16", "amx_bf16", "bf16"],
        Precision::Fp16 => &["avx512_fp16", "amx_fp16", "fphp", "asimdhp"],
        Precision::Int8 => &["avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"],
        Precision::Fp32 => return None,
    };
    let native = ctx
        .job
        .hardware
        .verdict(ctx.device, precision)
        .is_some_and(|v| v.native);
    let (needed, _) = aoti::required_flags(&variant.metadata);
    if !native || needed.iter().any(|f| arithmetic.contains(f)) {
        return None;
    }
    let isa = variant
        .metadata
        .get(aoti::keys::CPU_ISA)
        .unwrap_or("an unrecorded instruction set");
    Some(format!(
        "{}'s own kernels were compiled for {isa}, which has no {precision} arithmetic: only the \
         libtorch kernels it calls (convolutions, matrix products) use this CPU's; export it \
         on this machine with `--isa native` for Inductor's kernels to use it too",
        variant.file
    ))
}
