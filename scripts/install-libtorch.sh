#!/usr/bin/env bash
# Installs libtorch from PyPI's torch wheel into precisiond's cache, once.
#
# Prints the LIBTORCH directory on stdout. A LIBTORCH set by the user (a
# Jetson's own build, a custom libtorch) is used as it is and nothing is
# installed. The wheel is installed into a temporary folder and renamed into
# place only when pip succeeded, so an interrupted install never looks cached.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/torch-$TORCH_VERSION"

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
if [ "$(uname -m)" = aarch64 ] && ! grep -qw atomics /proc/cpuinfo 2>/dev/null; then
    echo "warning: this CPU has no LSE atomics (an ARMv8.0 core such as Cortex-A53/A57/A72)." >&2
    echo "  PyPI's aarch64 libtorch is built for ARMv8.2-A cores and stops with an illegal" >&2
    echo "  instruction here; set LIBTORCH to a libtorch $TORCH_VERSION built for ARMv8.0" >&2
    echo "  (see the README's \"ARM boards\" section)." >&2
fi

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$PYTHON" ]; then
        echo "error: python3 with pip is needed to install libtorch (or set LIBTORCH to an existing libtorch)" >&2
        exit 1
    fi
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.torch-$TORCH_VERSION.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "installing torch==$TORCH_VERSION into $TARGET (about 4.7 GB, once per cache)" >&2
    # numpy: the fixture and benchmark scripts write .npy files and PyTorch
    # warns without it.
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --target "$partial" "torch==$TORCH_VERSION" numpy >&2
    touch "$partial/.complete"
    rm -rf "$TARGET"
    mv "$partial" "$TARGET"
    trap - EXIT
fi
echo "$TARGET/torch"
