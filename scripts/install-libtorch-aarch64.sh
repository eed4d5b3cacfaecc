#!/usr/bin/env bash
# Installs libtorch for aarch64 (cross-building for ARM boards) into
# precisiond's cache, once, and prints the LIBTORCH folder to build against.
#
# A LIBTORCH_AARCH64 set by the user (JetPack's libtorch, a custom build) is
# used as it is. Otherwise: PyPI's torch==2.13.0 manylinux_2_28_aarch64
# wheel. It is a CUDA build whose libtorch_cpu.so NEEDs libcudart.so.13 and
# libcupti.so.13, which come from two small runtime wheels; libtorch_cuda
# and the rest of CUDA are left out (no GPU is emulated). The wheel's
# libtorch.so NEEDs libtorch_cuda.so, so the folder gets a stub libtorch.so
# instead (torch-sys links -ltorch; the worker needs only libtorch_cpu).
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CUDA_RUNTIME_VERSION="13.0.96"
CUDA_CUPTI_VERSION="13.0.85"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/torch-$TORCH_VERSION-aarch64"
CC_AARCH64="${CC_AARCH64:-aarch64-linux-gnu-gcc}"

if [ -n "${LIBTORCH_AARCH64:-}" ]; then
    if [ ! -d "$LIBTORCH_AARCH64/lib" ] || [ ! -d "$LIBTORCH_AARCH64/include" ]; then
        echo "error: LIBTORCH_AARCH64=$LIBTORCH_AARCH64 has no lib/ and include/ folders" >&2
        exit 1
    fi
    echo "$LIBTORCH_AARCH64"
    exit 0
fi

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    [ -n "$PYTHON" ] || { echo "error: python3 with pip is needed to download the aarch64 torch wheel" >&2; exit 1; }
    command -v "$CC_AARCH64" >/dev/null || {
        echo "error: $CC_AARCH64 is missing: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.torch-$TORCH_VERSION-aarch64.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "downloading torch==$TORCH_VERSION for aarch64 into $TARGET (about 0.45 GB, once per cache)" >&2
    # pip takes exact platform tags: list each the wheels are published under.
    platforms=()
    for tag in manylinux_2_28_aarch64 manylinux_2_25_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64; do
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
    "$CC_AARCH64" -shared -o "$root/lib/libtorch.so" -x c /dev/null -Wl,-soname,libtorch.so
    echo "$TORCH_VERSION" > "$root/build-version"
    touch "$root/.complete"
    rm -rf "$TARGET"
    mv "$root" "$TARGET"
    rm -rf "$partial"
    trap - EXIT
fi
echo "$TARGET"
