#!/usr/bin/env bash
# Regenerates the committed AOTInductor test fixtures (called by `make
# fixtures`), from the tiny CNN defined in tests/fixtures/aoti/tiny_cnn.py:
#
#   tests/fixtures/aoti/tiny_cnn.pt2        AOTInductor package, FP32
#   tests/fixtures/aoti/tiny_cnn.bf16.pt2   AOTInductor package, BF16
#   tests/fixtures/aoti/tiny_cnn.int8.pt2   AOTInductor package, INT8 (PT2E, torchao)
#   tests/fixtures/aoti/plain_export.pt2    a plain torch.export.save archive of the
#                                           same model: NOT an AOTInductor package,
#                                           the daemon must refuse it
#   tests/fixtures/aoti/tiny_cnn.pt         the same model as TorchScript
#
# The packages are compiled with --isa avx2, so they run on any x86-64 CPU
# with AVX2 (precisiond-export.py also re-runs each one with oneDNN limited
# to AVX2). They must be generated on an x86-64 machine. INT8 uses the
# random-sample calibration (the fixture only needs to be a valid INT8
# package; its accuracy figures mean little). Packages are not byte-identical
# from run to run (compiled code), the plain export is.
#
# torch and torchao come from precisiond's cache (installed on first use by
# scripts/install-torch-full.sh and scripts/install-torchao.sh) unless
# PYTHONPATH is already set.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=tests/fixtures/aoti
if [ -z "${PYTHONPATH:-}" ]; then
    PYTHONPATH="$(scripts/install-torch-full.sh):$(scripts/install-torchao.sh)"
    export PYTHONPATH
fi
case "$(uname -m)" in
    x86_64|amd64) ;;
    *) echo "error: the AOTInductor fixtures are x86-64 (AVX2) code; run this on x86-64" >&2; exit 1 ;;
esac

python3 scripts/precisiond-export.py "$OUT/tiny_cnn.py" --name tiny_cnn --out-dir "$OUT" \
    --precisions fp32,bf16,int8 --isa avx2

# The plain export, and the same model as TorchScript (the side-by-side
# test links it to the family), each written to a hidden name and renamed
# into place.
python3 - "$OUT" <<'PY'
import os, runpy, sys, warnings
warnings.filterwarnings("ignore")
import torch

out = sys.argv[1]
ns = runpy.run_path(os.path.join(out, "tiny_cnn.py"))
ep = torch.export.export(ns["model"], ns["example_inputs"])
tmp = os.path.join(out, ".plain_export.pt2.tmp")
torch.export.save(ep, tmp)
os.replace(tmp, os.path.join(out, "plain_export.pt2"))
# TorchScript names classes after their module: imported as `tiny_cnn`
# (run_path's "<run_path>" is not a name TorchScript can load back).
import importlib.util
spec = importlib.util.spec_from_file_location("tiny_cnn", os.path.join(out, "tiny_cnn.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
tmp = os.path.join(out, ".tiny_cnn.pt.tmp")
torch.jit.script(mod.model).save(tmp)
os.replace(tmp, os.path.join(out, "tiny_cnn.pt"))
PY

echo
echo "wrote:"
for f in tiny_cnn.pt2 tiny_cnn.bf16.pt2 tiny_cnn.int8.pt2 plain_export.pt2 tiny_cnn.pt; do
    if [ -f "$OUT/$f" ]; then
        printf '  %-40s %9d bytes\n' "$OUT/$f" "$(stat -c %s "$OUT/$f")"
    else
        printf '  %-40s missing\n' "$OUT/$f"
    fi
done
