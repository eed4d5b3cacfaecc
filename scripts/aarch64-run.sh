#!/usr/bin/env bash
# Runs one aarch64 program (precisiond, precisiond-worker, a test binary)
# under qemu-user on this x86 machine:
#
#   scripts/aarch64-run.sh [--cpu MODEL] PROGRAM [ARGS...]
#
# MODEL is a CPU as qemu spells it (cortex-a53, cortex-a72, cortex-a76,
# neoverse-n1, neoverse-n2, max; default cortex-a76, or
# $PRECISIOND_QEMU_CPU). qemu 10 emulates that CPU's /proc/cpuinfo and
# hwcaps, so precisiond's hardware detection sees the emulated CPU.
#
# The programs precisiond starts itself (the worker, the quantizing
# process) go through this script too (PRECISIOND_RUNNER), so a daemon or a
# `run` under emulation works end to end. PRECISIOND_EMULATED tells reports
# and `detect` that every timing is the emulator's.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cpu="${PRECISIOND_QEMU_CPU:-cortex-a76}"
if [ "${1:-}" = "--cpu" ]; then
    cpu="${2:?--cpu needs a CPU model, e.g. cortex-a76}"
    shift 2
fi
program="${1:?usage: scripts/aarch64-run.sh [--cpu MODEL] PROGRAM [ARGS...]}"
shift

qemu="$("$here/install-qemu.sh")"
sysroot="${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}"
[ -d "$sysroot/lib" ] || {
    echo "error: no aarch64 sysroot at $sysroot: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu (or set AARCH64_SYSROOT)" >&2
    exit 1
}
version="$("$qemu" --version | sed -n 's/^qemu-aarch64 version \([^ ]*\).*/\1/p')"

export PRECISIOND_RUNNER="$here/aarch64-run.sh"
export PRECISIOND_QEMU_CPU="$cpu"
export PRECISIOND_EMULATED="qemu-aarch64 $version, -cpu $cpu"
# The binaries carry an rpath to the aarch64 libtorch; only the C and C++
# runtime come from the sysroot (-L).
exec "$qemu" -L "$sysroot" -cpu "$cpu" "$program" "$@"
