#!/usr/bin/env bash
# Installs torchao from PyPI into precisiond's cache, once, and prints the
# folder holding the Python package `torchao`. scripts/precisiond-export.py
# needs it for INT8: PyTorch 2 Export (PT2E) quantization left
# torch.ao.quantization in torch 2.13 and lives on as
# torchao.quantization.pt2e. torchao 0.18.0 is the release checked with
# torch 2.13.0 (its __init__ asks for torch >= 2.11.0). It has no required
# dependencies, so it goes in with --no-deps into its own folder, beside (not
# inside) the torch folder; Python then needs both on PYTHONPATH:
#
#   PYTHONPATH=$(scripts/install-torch-full.sh):$(scripts/install-torchao.sh)
#
# Installed into a temporary folder and renamed into place only when pip
# succeeded, so an interrupted install never looks cached.
set -euo pipefail

TORCHAO_VERSION="${TORCHAO_VERSION:-0.18.0}"
CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/torchao-$TORCHAO_VERSION"

if [ ! -f "$TARGET/.complete" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$PYTHON" ]; then
        echo "error: python3 with pip is needed to install torchao" >&2
        exit 1
    fi
    mkdir -p "$CACHE"
    partial="$(mktemp -d "$CACHE/.torchao-$TORCHAO_VERSION.XXXXXX")"
    trap 'rm -rf "$partial"' EXIT
    echo "installing torchao==$TORCHAO_VERSION into $TARGET (about 30 MB, once per cache)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
        --target "$partial" "torchao==$TORCHAO_VERSION" >&2
    touch "$partial/.complete"
    rm -rf "$TARGET"
    mv "$partial" "$TARGET"
    trap - EXIT
fi
echo "$TARGET"
