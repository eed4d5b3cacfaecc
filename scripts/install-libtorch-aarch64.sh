#!/usr/bin/env bash
# The libtorch to cross-build for aarch64 against: LIBTORCH_AARCH64 when
# set (JetPack's libtorch, a custom build), else the CPU part of PyPI's
# aarch64 wheel in the cache (scripts/install-libtorch-lean.sh). Prints it.
set -euo pipefail
if [ -n "${LIBTORCH_AARCH64:-}" ]; then
    if [ ! -d "$LIBTORCH_AARCH64/lib" ] || [ ! -d "$LIBTORCH_AARCH64/include" ]; then
        echo "error: LIBTORCH_AARCH64=$LIBTORCH_AARCH64 has no lib/ and include/ folders" >&2
        exit 1
    fi
    echo "$LIBTORCH_AARCH64"
    exit 0
fi
exec "$(dirname "$0")/install-libtorch-lean.sh" aarch64
