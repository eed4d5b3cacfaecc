#!/usr/bin/env bash
# Installs the CPU part of libtorch for ARCH (x86_64 or aarch64) into
# precisiond's cache, once, and prints the LIBTORCH folder to build against:
#
#   scripts/install-libtorch-lean.sh x86_64|aarch64
#
# From PyPI's torch==2.13.0 wheel for ARCH, which is a CUDA build: its
# libtorch_cpu.so NEEDs libcudart.so.13 and libcupti.so.13 (two small
# runtime wheels) and nothing else of CUDA. libtorch_cuda and the 2.7 GB of
# CUDA libraries behind it are left out: the folder is for machines without
# a GPU (and for cross-building ARM boards). The wheel's libtorch.so NEEDs
# libtorch_cuda.so, so the folder gets a stub libtorch.so instead
# (torch-sys links -ltorch; the worker needs only libtorch_cpu).
# libtorch_cpu's rpath holds $ORIGIN, so the runtime libraries sit beside it.
set -euo pipefail

ARCH="${1:?usage: scripts/install-libtorch-lean.sh x86_64|aarch64}"
case "$ARCH" in
    x86_64) CC_STUB="${CC:-cc}" ;;
    aarch64) CC_STUB="${CC_AARCH64:-aarch64-linux-gnu-gcc}" ;;
    *) echo "error: no PyPI libtorch for $ARCH" >&2; exit 1 ;;
esac

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CUDA_RUNTIME_VERSION="13.0.96"
CUDA_CUPTI_VERSION="13.0.85"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/libtorch-$TORCH_VERSION-cpu-$ARCH"

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    [ -n "$PYTHON" ] || { echo "error: python3 with pip is needed to download the aarch64 torch wheel" >&2; exit 1; }
    command -v "$CC_STUB" >/dev/null || {
        echo "error: $CC_STUB is missing (for aarch64: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.libtorch-$TORCH_VERSION-$ARCH.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "installing libtorch $TORCH_VERSION's CPU part for $ARCH into $TARGET (about 0.5 GB, once per cache)" >&2
    # pip takes exact platform tags: list each the wheels are published under.
    platforms=()
    for tag in "manylinux_2_28_$ARCH" "manylinux_2_25_$ARCH" "manylinux_2_17_$ARCH" "manylinux2014_$ARCH"; do
        platforms+=(--platform "$tag")
    done
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --only-binary=:all: "${platforms[@]}" --python-version 3.11 --implementation cp \
        --dest "$partial/wheels" \
        "torch==$TORCH_VERSION" \
        "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" \
        "nvidia-cuda-cupti==$CUDA_CUPTI_VERSION" >&2
    for wheel in "$partial"/wheels/*.whl; do
        "$PYTHON" -m zipfile -e "$wheel" "$partial/unpacked" >&2
    done
    root="$partial/libtorch"
    mkdir -p "$root/lib"
    cp -a "$partial/unpacked/torch/include" "$root/include"
    # What libtorch_cpu needs on the CPU, and nothing of CUDA beyond its
    # two small runtime libraries.
    shopt -s nullglob
    for lib in "$partial"/unpacked/torch/lib/libtorch_cpu.so \
               "$partial"/unpacked/torch/lib/libc10.so \
               "$partial"/unpacked/torch/lib/libgomp*.so* \
               "$partial"/unpacked/torch/lib/libarm_compute*.so* \
               "$partial"/unpacked/torch/lib/libnvpl_*.so* \
               "$partial"/unpacked/torch.libs/*.so* \
               "$partial"/unpacked/nvidia/*/lib/libcudart.so.* \
               "$partial"/unpacked/nvidia/*/lib/libcupti.so.*; do
        cp -a "$lib" "$root/lib/"
    done
    shopt -u nullglob
    "$CC_STUB" -shared -o "$root/lib/libtorch.so" -x c /dev/null -Wl,-soname,libtorch.so
    echo "$TORCH_VERSION" > "$root/build-version"
    touch "$root/.complete"
    rm -rf "$TARGET"
    mv "$root" "$TARGET"
    rm -rf "$partial"
    trap - EXIT
fi
echo "$TARGET"
