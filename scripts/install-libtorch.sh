#!/usr/bin/env bash
# Installs the libtorch precisiond builds against into its cache, once, and
# prints the LIBTORCH directory on stdout:
#
# - a LIBTORCH set by the user (a Jetson's own build, a custom libtorch) is
#   used as it is and nothing is installed;
# - on a machine with the NVIDIA driver (libcuda.so.1), or with
#   PRECISIOND_CUDA=1: PyPI's full torch wheel with its CUDA libraries
#   (about 4.7 GB, scripts/install-torch-full.sh);
# - otherwise, or with PRECISIOND_CUDA=0, only its CPU part (about 0.5 GB,
#   scripts/install-libtorch-lean.sh): libtorch_cpu and the two small CUDA
#   runtime libraries it needs.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if [ -n "${LIBTORCH:-}" ]; then
    if [ ! -d "$LIBTORCH/lib" ] || [ ! -d "$LIBTORCH/include" ]; then
        echo "error: LIBTORCH=$LIBTORCH has no lib/ and include/ folders; unset it to use the cached PyPI libtorch" >&2
        exit 1
    fi
    echo "$LIBTORCH"
    exit 0
fi

# PyPI's aarch64 wheels are built for ARMv8.2-A cores: on an ARMv8.0 core
# (Raspberry Pi 3/4, Jetson Nano/TX1/TX2: no LSE atomics) some of their
# kernels stop with an illegal instruction. Say so before installing 0.5 GB.
# (PRECISIOND_ARCH and PRECISIOND_CPUINFO stand in for uname -m and
# /proc/cpuinfo in tests.)
arch="${PRECISIOND_ARCH:-$(uname -m)}"
cpuinfo="${PRECISIOND_CPUINFO:-/proc/cpuinfo}"
if [ "$arch" = aarch64 ] && ! grep -qw atomics "$cpuinfo" 2>/dev/null; then
    echo "warning: this CPU has no LSE atomics (an ARMv8.0 core such as Cortex-A53/A57/A72)." >&2
    echo "  PyPI's aarch64 libtorch is built for ARMv8.2-A cores and stops with an illegal" >&2
    echo "  instruction here; build the worker against Debian's libtorch 2.6 or another" >&2
    echo "  libtorch made for ARMv8.0 (see the README's \"ARM boards\" section)." >&2
fi

# The NVIDIA driver's library, where the loader finds it (ldconfig's cache,
# or the usual folders when /sbin is not on PATH).
has_nvidia_driver() {
    if command -v ldconfig >/dev/null && ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
        return 0
    fi
    local dir
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu/tegra /usr/lib64 /usr/lib/wsl/lib; do
        [ -e "$dir/libcuda.so.1" ] && return 0
    done
    return 1
}

here="$(cd "$(dirname "$0")" && pwd)"
if [ "${PRECISIOND_CUDA:-}" = 1 ] || { [ "${PRECISIOND_CUDA:-}" != 0 ] && has_nvidia_driver; }; then
    echo "$("$here/install-torch-full.sh")/torch"
else
    "$here/install-libtorch-lean.sh" "$arch"
fi
