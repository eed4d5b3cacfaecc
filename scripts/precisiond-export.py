#!/usr/bin/env python3
"""Write AOTInductor packages (.pt2) of one model in several precisions.

precisiond benchmarks a model "family": one AOTInductor package per
precision, named after the family and placed side by side:

    DIR/NAME.pt2         FP32
    DIR/NAME.bf16.pt2    bfloat16 weights and inputs
    DIR/NAME.fp16.pt2    float16 weights and inputs
    DIR/NAME.int8.pt2    static post-training int8 (PT2E, via torchao)

Usage:

    precisiond-export.py SOURCE --name NAME --out-dir DIR
        [--precisions fp32,bf16,fp16,int8]   (default: all four)
        [--calibration DIR] [--mean a,b,c --std a,b,c]
        [--isa native|avx2|avx512]           (default: native)
        [--device cpu|cuda]                  (default: cpu)
        [--inputs FILE.pt]

SOURCE is one of:

  * a ``torch.export.save`` archive (``.pt2`` holding an ExportedProgram, not
    an AOTInductor package). The module is ``ep.module()``; the example inputs
    are the ones ``torch.export`` stored in the archive (torch 2.13 keeps them
    as ``ep.example_inputs == (args, kwargs)``). Archives without them need
    ``--inputs FILE.pt`` (a ``torch.save``d tensor or tuple/list of tensors).
  * a Python file (``.py``) defining, at top level, ``model`` (an nn.Module)
    and ``example_inputs`` (a tuple of tensors). ``--inputs`` overrides the
    latter.

How each precision is made:

  fp32   torch.export.export(model, inputs), then aoti_compile_and_package.
  bf16   a deep copy of the model cast with .to(torch.bfloat16), the example
  fp16   inputs' floating tensors cast alike, exported and compiled.
  int8   PyTorch 2 Export (PT2E) static quantization. torch 2.13 no longer
         ships it under torch.ao.quantization; it comes from torchao
         (``torchao.quantization.pt2e``, tested with torchao 0.18.0):
           m = torch.export.export(model, inputs).module()
           m = prepare_pt2e(m, quantizer)   # X86InductorQuantizer on x86,
                                            # ArmInductorQuantizer on ARM
           m(*sample) for each calibration sample
           m = convert_pt2e(m)
           torch.export.export(m, inputs) -> aoti_compile_and_package
         If torchao cannot be imported, or with --device cuda (these
         quantizers make CPU/oneDNN int8 kernels), INT8 is skipped with the
         reason printed (and the exit status stays 0 for that).

Inductor settings: every variant is compiled with freezing = True (weights
become constants; for INT8 this is what turns PT2E's quantize/dequantize
pairs into oneDNN int8 convolutions instead of float ones on dequantized
weights). Exception: bf16/fp16 with --isa avx2 are compiled without freezing
and weight prepacking, because the oneDNN bf16 convolution Inductor would
otherwise pick on an AVX-512 machine refuses to run on an AVX2-only CPU.

Calibration samples (``--calibration DIR``) are read like precisiond reads
them: ``.pt`` files written by torch.save (a tensor, or a tuple/list of
tensors = one sample), ``.npy`` arrays (one array = one sample of a one-input
model) and JPEG/PNG images (only when PIL is importable; resized to the
example input's H x W, scaled to [0, 1] and normalised with --mean/--std,
ImageNet's by default). Files are taken in name order; a wrong shape or dtype
is an error naming the file. Without a folder, 8 random samples shaped like
the example inputs are used and a warning says INT8 accuracy will then say
little.

Every package carries string metadata (``aot_inductor.metadata``), readable
from ``*/data/aotinductor/model/*wrapper_metadata.json`` in the zip next to
Inductor's own AOTI_CPU_ISA, AOTI_DEVICE_KEY, AOTI_MACHINE, ...:

  precisiond.precision   "fp32" | "bf16" | "fp16" | "int8"
  precisiond.inputs      TOML text of the FP32 inputs, as precisiond's
                         settings file describes them: one [[inputs]] table
                         per example input with shape = [..], dtype = "..."
  precisiond.arch_flags  the compiler ISA flags Inductor used (after --isa)
  precisiond.exporter    "precisiond-export.py torch <ver> [torchao <ver>]"

--isa: packages hold machine code compiled for the machine they were made
on. ``avx2`` makes Inductor generate AVX2 code (cpp.simdlen = 256) even on an
AVX-512 machine, so the package runs on any x86-64 with AVX2; ``avx512``
forces 512-bit vectors; ``native`` (default) is Inductor's own pick for this
CPU. With --device cuda the kernels are compiled for this machine's GPU.

Each package is compiled into a hidden temporary folder inside DIR
(``DIR/.precisiond-export-tmp-PID/``, same file system), checked there and
only then renamed into place, so a daemon watching DIR never sees a
half-written or broken package. The check loads it back with
``torch._inductor.aoti_load_package``, runs it on the example inputs (cast for
bf16/fp16) and prints the cosine similarity against the FP32 eager output,
the size, compile seconds and the AOTI_CPU_ISA it got. With --isa avx2 the
package is also run once in a child process with oneDNN limited to AVX2
(ONEDNN_MAX_CPU_ISA=AVX2), as on an AVX2-only CPU; this catches oneDNN
kernels that exist only for AVX-512 (Inductor's own kernels are AVX2 code
already), though not ATen code that picks its path from the real CPU.
PRECISIOND_EXPORT_DEBUG=1 prints tracebacks and keeps the temporary folder.

Exit status: 0 when every requested variant was written (INT8 skipped for a
printed reason counts as success), 1 when a requested variant failed, 2 for
usage errors.

Environment: torch and torchao are found by normal import, so PYTHONPATH
must name both folders when they are installed apart, e.g.

    export PYTHONPATH=$HOME/.cache/precisiond/torch-2.13.0:$HOME/.cache/precisiond/torchao-0.18.0

(torchao installed with ``pip install --no-deps --target
${XDG_CACHE_HOME:-$HOME/.cache}/precisiond/torchao-0.18.0 torchao==0.18.0``).
"""

import argparse
import copy
import json
import logging
import os
import platform
import runpy
import shutil
import sys
import time
import traceback
import warnings
import zipfile

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
SUFFIX = {"fp32": ".pt2", "bf16": ".bf16.pt2", "fp16": ".fp16.pt2", "int8": ".int8.pt2"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_RANDOM_SAMPLES = 8
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def log(msg=""):
    print(msg, flush=True)


class SkipVariant(Exception):
    """A variant that cannot be made here for a stated, expected reason."""


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def parse_floats3(text, what):
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected numbers a,b,c, got {text!r}")
    if not vals:
        raise argparse.ArgumentTypeError(f"{what}: empty")
    return vals


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="precisiond-export.py",
        description="Write AOTInductor packages NAME.pt2, NAME.bf16.pt2, NAME.fp16.pt2, "
        "NAME.int8.pt2 of one model for precisiond. Packages hold machine code for "
        "the CPU/GPU they are made on: run this on the target device, or pick --isa for it.",
    )
    p.add_argument("source", help="torch.export.save archive (.pt2) or Python file (.py) "
                   "defining `model` and `example_inputs`")
    p.add_argument("--name", required=True, help="family name: files are NAME.pt2, NAME.bf16.pt2, ...")
    p.add_argument("--out-dir", required=True, help="folder to write the packages into (created)")
    p.add_argument("--precisions", default=",".join(PRECISIONS),
                   help="comma-separated subset of fp32,bf16,fp16,int8 (default: all)")
    p.add_argument("--calibration", metavar="DIR",
                   help="INT8 calibration samples (.pt, .npy, JPEG/PNG)")
    p.add_argument("--mean", type=lambda s: parse_floats3(s, "--mean"), default=IMAGENET_MEAN,
                   help="image normalisation mean (default ImageNet's)")
    p.add_argument("--std", type=lambda s: parse_floats3(s, "--std"), default=IMAGENET_STD,
                   help="image normalisation std (default ImageNet's)")
    p.add_argument("--isa", choices=("native", "avx2", "avx512"), default="native",
                   help="CPU vector ISA Inductor compiles for (default: native = Inductor's pick)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--inputs", metavar="FILE.pt",
                   help="example inputs (torch.save of a tensor or tuple/list of tensors), "
                   "needed when SOURCE does not carry them")
    args = p.parse_args(argv)
    precs = [x.strip() for x in args.precisions.split(",") if x.strip()]
    bad = [x for x in precs if x not in PRECISIONS]
    if bad or not precs:
        p.error(f"--precisions: unknown {bad or 'empty list'}; choose from {','.join(PRECISIONS)}")
    # keep the canonical order and drop duplicates; fp32 is always computed
    # eagerly as the reference even when its package is not requested
    args.precisions = [x for x in PRECISIONS if x in precs]
    if len(args.mean) != len(args.std):
        p.error("--mean and --std need the same number of values")
    if "/" in args.name or args.name.startswith(".") or not args.name:
        p.error("--name must be a plain, non-hidden file name stem")
    return args


# --------------------------------------------------------------------------
# Loading the source model and its example inputs
# --------------------------------------------------------------------------


def as_input_tuple(obj, what):
    import torch

    if isinstance(obj, torch.Tensor):
        obj = (obj,)
    if isinstance(obj, list):
        obj = tuple(obj)
    if not isinstance(obj, tuple) or not obj or not all(isinstance(t, torch.Tensor) for t in obj):
        raise ValueError(f"{what}: expected a tensor or a non-empty tuple/list of tensors, "
                         f"got {type(obj).__name__}")
    return obj


def load_source(path, inputs_file):
    """Return (eval-mode nn.Module, tuple of example input tensors)."""
    import torch

    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    example = None
    if path.endswith(".py"):
        ns = runpy.run_path(path, run_name="__precisiond_export__")
        if "model" not in ns or not isinstance(ns["model"], torch.nn.Module):
            raise ValueError(f"{path}: must define `model`, an nn.Module, at top level")
        model = ns["model"]
        if inputs_file is None:
            if "example_inputs" not in ns:
                raise ValueError(f"{path}: must define `example_inputs` (a tuple of tensors) "
                                 "at top level, or pass --inputs FILE.pt")
            example = as_input_tuple(ns["example_inputs"], f"{path}: example_inputs")
    else:
        if zipfile.is_zipfile(path) and is_aoti_package(path):
            raise ValueError(f"{path}: is an AOTInductor package (compiled), not a "
                             "torch.export.save archive; export from the model instead")
        try:
            ep = torch.export.load(path)
        except Exception as e:
            raise ValueError(f"{path}: not a torch.export.save archive ({type(e).__name__}: {e})")
        model = ep.module()
        if inputs_file is None:
            stored = getattr(ep, "example_inputs", None)
            if stored is None:
                raise ValueError(f"{path}: the archive holds no example inputs; "
                                 "pass --inputs FILE.pt")
            args_, kwargs = stored
            if kwargs:
                raise ValueError(f"{path}: example inputs use keyword arguments "
                                 f"({sorted(kwargs)}), which precisiond cannot feed")
            example = as_input_tuple(tuple(args_), f"{path}: stored example inputs")
    if inputs_file is not None:
        example = as_input_tuple(torch.load(inputs_file, weights_only=True), inputs_file)
    try:
        model.eval()
    except NotImplementedError:
        # ep.module() refuses eval()/train() ("Calling eval() is not supported
        # yet"): an exported program already has its mode baked in
        pass
    return model, tuple(t.detach() for t in example)


def is_aoti_package(path):
    with zipfile.ZipFile(path) as z:
        return any("/data/aotinductor/" in n for n in z.namelist())


# --------------------------------------------------------------------------
# Metadata helpers
# --------------------------------------------------------------------------

DTYPE_NAMES = {
    "float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64",
    "int64": "int64", "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "bool",
}


def dtype_name(dt):
    name = str(dt).replace("torch.", "")
    if name not in DTYPE_NAMES:
        raise ValueError(f"input dtype {name} is not one precisiond knows "
                         f"({' '.join(DTYPE_NAMES)})")
    return DTYPE_NAMES[name]


def inputs_toml(example):
    out = []
    for t in example:
        out.append("[[inputs]]\n")
        out.append("shape = [" + ", ".join(str(int(d)) for d in t.shape) + "]\n")
        out.append(f'dtype = "{dtype_name(t.dtype)}"\n')
    return "".join(out)


def read_package_metadata(path):
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist()
                 if n.endswith("wrapper_metadata.json") and "/data/aotinductor/" in n]
        if not names:
            return {}
        return json.loads(z.read(names[0]).decode())


def isa_configs(isa):
    """Inductor configs that pin the CPU vector ISA."""
    if isa == "avx2":
        return {"cpp.simdlen": 256}
    if isa == "avx512":
        return {"cpp.simdlen": 512}
    return {}


# Inductor configs every variant is compiled with. freezing = True folds the
# weights into the graph as constants; for INT8 it is what lets Inductor turn
# PT2E's quantize/dequantize patterns into oneDNN int8 kernels
# (qconv_pointwise, qlinear_pointwise). Without it the package would
# dequantize the int8 weights on every call and run float convolutions, i.e.
# simulate INT8 rather than run it. It is applied to all precisions so they
# are compared under the same compiler settings.
COMMON_CONFIGS = {"freezing": True}


def variant_configs(prec, isa):
    """Inductor configs for one variant: COMMON_CONFIGS and the ISA pin, except
    that bf16/fp16 built with --isa avx2 get freezing = False and
    cpp.weight_prepack = False.

    With freezing and weight prepacking, Inductor picks oneDNN's
    low-precision convolution (mkldnn._convolution_pointwise) when the
    *compiling* CPU supports it, and at run time oneDNN refuses it on a plain
    AVX2 CPU ("bf16 path needs the cpu support avx_ne_convert or avx512bw,
    avx512vl and avx512dq", found with ONEDNN_MAX_CPU_ISA=AVX2). Turning off
    cpp.weight_prepack alone is not enough: Inductor registers its freezing
    patterns once per process, with the settings of the first compile (the
    FP32 one here), so freezing is turned off too. The package then calls
    ATen's convolution, which has a fallback on every CPU. FP32 and INT8
    oneDNN kernels run on AVX2 (checked the same way), so they keep freezing.
    """
    cfg = dict(COMMON_CONFIGS)
    cfg.update(isa_configs(isa))
    if isa == "avx2" and prec in ("bf16", "fp16"):
        cfg["freezing"] = False
        cfg["cpp.weight_prepack"] = False
    return cfg


def arch_flags(isa_cfg):
    import torch._inductor.config as icfg
    from torch._inductor import cpu_vec_isa

    with icfg.patch(isa_cfg):
        isa = cpu_vec_isa.pick_vec_isa()
        flags = isa.build_arch_flags() if isa else ""
        return str(isa) if isa else "none", flags.strip()


# --------------------------------------------------------------------------
# Calibration samples
# --------------------------------------------------------------------------


def check_sample(sample, example, what):
    if len(sample) != len(example):
        raise ValueError(f"{what}: {len(sample)} tensor(s), the model takes {len(example)}")
    for i, (s, e) in enumerate(zip(sample, example)):
        if tuple(s.shape) != tuple(e.shape):
            raise ValueError(f"{what}: input {i} has shape {list(s.shape)}, "
                             f"expected {list(e.shape)}")
        if s.dtype != e.dtype:
            raise ValueError(f"{what}: input {i} has dtype {dtype_name(s.dtype)}, "
                             f"expected {dtype_name(e.dtype)}")


def load_image(path, example, mean, std):
    import torch
    from PIL import Image

    if len(example) != 1:
        raise ValueError(f"{path}: images only calibrate one-input models")
    shape = tuple(example[0].shape)
    if len(shape) not in (3, 4) or shape[-3] != 3 or (len(shape) == 4 and shape[0] != 1):
        raise ValueError(f"{path}: images need an input shaped [1,3,H,W] or [3,H,W], "
                         f"the model's is {list(shape)}")
    if len(mean) != 3:
        raise ValueError("--mean/--std need 3 values for RGB images")
    h, w = shape[-2], shape[-1]
    with Image.open(path) as im:
        im = im.convert("RGB").resize((w, h), Image.BILINEAR)
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    t = data.reshape(h, w, 3).permute(2, 0, 1).float() / 255.0
    t = (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return (t.reshape(shape).to(example[0].dtype),)


def load_calibration(folder, example, mean, std):
    """Return a list of samples (tuples of tensors), in file-name order."""
    import torch

    try:
        import PIL  # noqa: F401
        have_pil = True
    except ImportError:
        have_pil = False
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    samples, skipped_images = [], 0
    for f in files:
        path = os.path.join(folder, f)
        low = f.lower()
        if low.endswith(".pt"):
            s = as_input_tuple(torch.load(path, weights_only=True), path)
        elif low.endswith(".npy"):
            import numpy as np

            if len(example) != 1:
                raise ValueError(f"{path}: a .npy sample only fits a one-input model")
            s = (torch.from_numpy(np.load(path, allow_pickle=False)),)
        elif low.endswith(IMAGE_EXTS):
            if not have_pil:
                skipped_images += 1
                continue
            s = load_image(path, example, mean, std)
        else:
            continue
        check_sample(s, example, path)
        samples.append(s)
    if skipped_images:
        log(f"WARNING: {skipped_images} image(s) in {folder} skipped: PIL is not importable")
    if not samples:
        raise ValueError(f"{folder}: no usable calibration samples (.pt, .npy, JPEG/PNG)")
    return samples


def random_samples(example, n):
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        s = []
        for e in example:
            if e.dtype.is_floating_point:
                s.append(torch.randn(e.shape, generator=g).to(e.dtype))
            elif e.dtype == torch.bool:
                s.append(torch.randint(0, 2, e.shape, generator=g).bool())
            else:
                # integer inputs (token ids, indices): reuse the example's range
                lo, hi = int(e.min()), int(e.max()) + 1
                s.append(torch.randint(lo, max(hi, lo + 1), e.shape, generator=g, dtype=e.dtype))
        out.append(tuple(s))
    return out


# --------------------------------------------------------------------------
# Building the variants
# --------------------------------------------------------------------------


def cast_inputs(example, dtype):
    return tuple(t.to(dtype) if t.dtype.is_floating_point else t for t in example)


def to_device(example, device):
    return tuple(t.to(device) for t in example)


def get_quantizer(device):
    """Return (quantizer, description, torchao version); raise SkipVariant when
    PT2E quantization is not available here."""
    if device != "cpu":
        raise SkipVariant("INT8: torchao's PT2E Inductor quantizers (X86/ARM) produce CPU "
                          "int8 kernels (oneDNN); there is no CUDA PT2E path to package here")
    # torchao 0.18.0's import makes torch 2.13 log a deprecation warning about
    # register_constant() on an Enum; it is torchao's business, keep it quiet
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        import torchao
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
    except Exception as e:
        raise SkipVariant(
            "INT8 needs torchao (PT2E quantization left torch.ao.quantization in torch 2.13): "
            f"import failed ({type(e).__name__}: {e}). Install it with "
            "`pip install --no-deps --target ${XDG_CACHE_HOME:-$HOME/.cache}/precisiond/"
            "torchao-0.18.0 torchao==0.18.0` (scripts/install-torchao.sh does that) and add "
            "that folder to PYTHONPATH")
    finally:
        pytree_log.setLevel(level)
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

        q = xiq.X86InductorQuantizer()
        q.set_global(xiq.get_default_x86_inductor_quantization_config())
        desc = "X86InductorQuantizer (default config: static, per-channel weights)"
    elif machine in ("aarch64", "arm64"):
        try:
            import torchao.quantization.pt2e.quantizer.arm_inductor_quantizer as aiq

            q = aiq.ArmInductorQuantizer()
            q.set_global(aiq.get_default_arm_inductor_quantization_config())
            desc = "ArmInductorQuantizer (default config)"
        except ImportError:
            from torchao.testing.pt2e._xnnpack_quantizer import (
                XNNPACKQuantizer, get_symmetric_quantization_config)

            q = XNNPACKQuantizer()
            q.set_global(get_symmetric_quantization_config())
            desc = "XNNPACKQuantizer (symmetric config)"
    else:
        raise SkipVariant(f"INT8: no PT2E quantizer for machine {platform.machine()!r}")
    return q, desc, torchao.__version__


def build_program(prec, model, example, device, samples, quant):
    """Return (ExportedProgram, example inputs for this variant)."""
    import torch

    if prec == "fp32":
        return torch.export.export(model, example), example
    if prec in ("bf16", "fp16"):
        dt = torch.bfloat16 if prec == "bf16" else torch.float16
        m = copy.deepcopy(model).to(dt)
        ex = cast_inputs(example, dt)
        return torch.export.export(m, ex), ex
    # int8: PT2E static post-training quantization (torchao)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = quant[0]
    m = torch.export.export(copy.deepcopy(model), example).module()
    m = prepare_pt2e(m, quantizer)
    with torch.no_grad():
        for s in samples:
            m(*to_device(s, device))
    m = convert_pt2e(m)
    return torch.export.export(m, example), example


def flat_tensors(out):
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat_tensors(o)]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flat_tensors(out[k])]
    return []


def cosine(a, b):
    import torch

    fa = torch.cat([t.detach().double().flatten().cpu() for t in flat_tensors(a)])
    fb = torch.cat([t.detach().double().flatten().cpu() for t in flat_tensors(b)])
    if fa.shape != fb.shape:
        raise ValueError(f"output has {fb.numel()} values, FP32 has {fa.numel()}")
    na, nb = fa.norm(), fb.norm()
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float((fa @ fb) / (na * nb))


AVX2_CHECK = r"""
import sys, warnings
warnings.filterwarnings("ignore")
import torch
runner = torch._inductor.aoti_load_package(sys.argv[1])
inputs = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    out = runner(*inputs)
torch.save(out, sys.argv[3])
"""


def check_under_avx2(pkg, ex, ref_out, tmp_dir):
    """Run the package once more in a child process with oneDNN limited to
    AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), as on an AVX2-only CPU; return the cosine
    vs FP32. Inductor's own kernels are already AVX2 code (cpp.simdlen), but
    the oneDNN kernels a package calls pick their code at run time and some
    (bf16 convolution) exist only on AVX-512 CPUs."""
    import subprocess
    import torch

    inp = os.path.join(tmp_dir, "avx2-check-inputs.pt")
    outp = os.path.join(tmp_dir, "avx2-check-output.pt")
    torch.save(tuple(ex), inp)
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", DNNL_MAX_CPU_ISA="AVX2")
    r = subprocess.run([sys.executable, "-c", AVX2_CHECK, pkg, inp, outp], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tail = [l for l in r.stdout.splitlines() if "Error" in l][-2:] or r.stdout.splitlines()[-3:]
        raise RuntimeError("the package fails with oneDNN limited to AVX2 "
                           "(ONEDNN_MAX_CPU_ISA=AVX2): " + " | ".join(tail))
    out = torch.load(outp, weights_only=True)
    return cosine(ref_out, out)


def make_variant(prec, model, example, args, samples, quant, ref_out, base_meta, tmp_dir):
    import torch

    final = os.path.join(args.out_dir, args.name + SUFFIX[prec])
    tmp = os.path.join(tmp_dir, args.name + SUFFIX[prec])
    meta = dict(base_meta)
    meta["precisiond.precision"] = prec
    if prec == "int8":
        meta["precisiond.exporter"] += f" torchao {quant[2]}"
    configs = variant_configs(prec, args.isa)
    configs["aot_inductor.metadata"] = meta

    t0 = time.monotonic()
    with torch.no_grad():
        ep, ex = build_program(prec, model, example, args.device, samples, quant)
        path = torch._inductor.aoti_compile_and_package(ep, package_path=tmp,
                                                        inductor_configs=configs)
    secs = time.monotonic() - t0
    if os.path.abspath(path) != os.path.abspath(tmp):
        shutil.move(path, tmp)

    # check: load back, run on the (cast) example inputs, compare with FP32 eager
    runner = torch._inductor.aoti_load_package(tmp)
    with torch.no_grad():
        out = runner(*to_device(ex, args.device))
    outs = flat_tensors(out)
    refs = flat_tensors(ref_out)
    if [tuple(t.shape) for t in outs] != [tuple(t.shape) for t in refs]:
        raise RuntimeError(f"output shapes {[list(t.shape) for t in outs]} differ from FP32's "
                           f"{[list(t.shape) for t in refs]}")
    if not all(torch.isfinite(t.float()).all() for t in outs if t.is_floating_point()):
        raise RuntimeError("output holds NaN or Inf")
    cos = cosine(ref_out, out)
    avx2_cos = None
    if args.isa == "avx2" and args.device == "cpu":
        avx2_cos = check_under_avx2(tmp, ex, ref_out, tmp_dir)
    pkg_meta = read_package_metadata(tmp)
    for k, v in meta.items():
        if pkg_meta.get(k) != v:
            raise RuntimeError(f"package metadata {k!r} is {pkg_meta.get(k)!r}, expected {v!r}")

    # publish atomically: fsync the file, rename, fsync the folder
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    dfd = os.open(args.out_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return {
        "path": final, "size": os.path.getsize(final), "secs": secs, "cosine": cos,
        "avx2_cos": avx2_cos, "isa": pkg_meta.get("AOTI_CPU_ISA", "?"), "device_key": pkg_meta.get("AOTI_DEVICE_KEY", "?"),
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        log("error: --device cuda but torch sees no CUDA device")
        return 2
    try:
        model, example = load_source(args.source, args.inputs)
        toml = inputs_toml(example)
    except Exception as e:
        log(f"error: {e}")
        return 2
    model = model.to(args.device)
    example = to_device(example, args.device)

    isa_cfg = isa_configs(args.isa)
    isa_name, flags = arch_flags(isa_cfg)
    if args.isa != "native" and args.device == "cpu" and platform.machine().lower() not in (
            "x86_64", "amd64"):
        log(f"error: --isa {args.isa} is for x86-64; this machine is {platform.machine()}")
        return 2
    if args.isa != "native":
        # loading a package whose AOTI_CPU_ISA differs from this CPU's makes
        # torch log "Device information mismatch for AOTI_CPU_ISA" on every
        # check; that is the point of --isa, so keep those quiet
        logging.getLogger("torch.export.pt2_archive._package").setLevel(logging.ERROR)
    base_meta = {
        "precisiond.inputs": toml,
        "precisiond.arch_flags": flags,
        "precisiond.exporter": f"precisiond-export.py torch {torch.__version__}",
    }

    log("NOTE: AOTInductor packages hold compiled machine code for the CPU/GPU they are "
        "made on.")
    log("      Run this script on the target device (or pick --isa for the target CPU); "
        "a package")
    log("      built for another ISA or GPU will not load or will crash there.")
    dev_desc = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.machine()
    log(f"source:    {args.source}")
    log(f"device:    {args.device} ({dev_desc}); --isa {args.isa} -> Inductor vec ISA "
        f"{isa_name}, flags '{flags}'")
    log(f"torch:     {torch.__version__}")
    log("inputs:    " + ", ".join(f"{list(t.shape)} {dtype_name(t.dtype)}" for t in example))
    log(f"out dir:   {args.out_dir}")

    with torch.no_grad():
        ref_out = model(*example)

    # INT8 preparation: quantizer and calibration samples
    quant, samples, int8_skip = None, None, None
    if "int8" in args.precisions:
        try:
            quant = get_quantizer(args.device)
            log(f"int8:      torchao {quant[2]}, {quant[1]}")
        except SkipVariant as e:
            int8_skip = str(e)
        if quant is not None:
            if args.calibration:
                try:
                    samples = load_calibration(args.calibration, example, args.mean, args.std)
                except Exception as e:
                    log(f"error: calibration: {e}")
                    return 1
                log(f"calib:     {len(samples)} sample(s) from {args.calibration}")
            else:
                samples = random_samples(example, NUM_RANDOM_SAMPLES)
                log(f"WARNING: no --calibration folder: calibrating INT8 on "
                    f"{NUM_RANDOM_SAMPLES} random samples;")
                log("         its accuracy figures will say little about real data "
                    "(timings are fine).")

    os.makedirs(args.out_dir, exist_ok=True)
    # hidden temporary folder on the same file system: compiled there, checked,
    # then renamed into place
    tmp_dir = os.path.join(args.out_dir, f".precisiond-export-tmp-{os.getpid()}")
    os.makedirs(tmp_dir, exist_ok=True)
    results, failed = [], []
    try:
        for prec in args.precisions:
            if prec == "int8" and int8_skip:
                log(f"\n[int8] SKIPPED: {int8_skip}")
                results.append((prec, None, "skipped"))
                continue
            log(f"\n[{prec}] exporting and compiling {args.name + SUFFIX[prec]} ...")
            try:
                r = make_variant(prec, model, example, args, samples, quant, ref_out, base_meta,
                                 tmp_dir)
            except Exception as e:
                log(f"[{prec}] FAILED: {type(e).__name__}: {e}")
                if os.environ.get("PRECISIOND_EXPORT_DEBUG"):
                    traceback.print_exc()
                failed.append(prec)
                results.append((prec, None, f"failed: {type(e).__name__}"))
                continue
            log(f"[{prec}] wrote {r['path']}: {r['size']} bytes, compiled in {r['secs']:.1f} s, "
                f"AOTI_CPU_ISA {r['isa']}, device {r['device_key']}, "
                f"cosine vs FP32 {r['cosine']:.7f}")
            if r["avx2_cos"] is not None:
                log(f"[{prec}] also runs with oneDNN limited to AVX2 "
                    f"(ONEDNN_MAX_CPU_ISA=AVX2): cosine vs FP32 {r['avx2_cos']:.7f}")
            results.append((prec, r, "ok"))
    finally:
        if os.environ.get("PRECISIOND_EXPORT_DEBUG"):
            log(f"PRECISIOND_EXPORT_DEBUG: kept {tmp_dir}")
        else:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    log("\nsummary:")
    log(f"  {'precision':<9} {'file':<32} {'bytes':>9} {'compile s':>9} {'cosine':>9} isa")
    for prec, r, status in results:
        if r is None:
            log(f"  {prec:<9} {args.name + SUFFIX[prec]:<32} {status}")
        else:
            log(f"  {prec:<9} {os.path.basename(r['path']):<32} {r['size']:>9} "
                f"{r['secs']:>9.1f} {r['cosine']:>9.7f} {r['isa']}")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
