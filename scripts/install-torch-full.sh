#!/usr/bin/env bash
# Installs PyPI's full torch wheel, with all its CUDA libraries (about
# 4.7 GB), into precisiond's cache, once, and prints the folder holding the
# Python package `torch`. Two users: a machine with a GPU builds against its
# libtorch (scripts/install-libtorch.sh), and the Python tooling (make
# fixtures, make bench) imports torch from it. The wheel is installed into
# a temporary folder and renamed into place only when pip succeeded, so an
# interrupted install never looks cached.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/torch-$TORCH_VERSION"

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
echo "$TARGET"
