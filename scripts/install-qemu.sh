#!/usr/bin/env bash
# Installs Debian 13's static qemu-aarch64 into precisiond's cache, once,
# without touching the system's packages, and prints its path.
#
# Why Debian 13's: Debian 12's qemu-user (7.2) shows the host's x86
# /proc/cpuinfo to the guest and libtorch's cpuinfo initialisation then
# crashes; qemu 10 emulates an arm64 /proc/cpuinfo and hwcaps for the CPU
# model given with -cpu. A qemu-aarch64 on PATH that is 10 or newer is used
# as it is.
set -euo pipefail

CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/qemu"

version_ok() {
    local v
    v="$("$1" --version 2>/dev/null | sed -n 's/^qemu-aarch64 version \([0-9]*\).*/\1/p')"
    [ -n "$v" ] && [ "$v" -ge 10 ]
}

if [ -n "${QEMU_AARCH64:-}" ]; then
    echo "$QEMU_AARCH64"
    exit 0
fi
for candidate in "$TARGET/usr/bin/qemu-aarch64" "$(command -v qemu-aarch64 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && version_ok "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

command -v apt-get >/dev/null || {
    echo "error: qemu-aarch64 10 or newer is needed (set QEMU_AARCH64 to one); apt-get is not here to fetch Debian 13's" >&2
    exit 1
}
echo "fetching Debian 13's qemu-user (static qemu-aarch64) into $TARGET" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/apt-private.sh"
apt_private "$work/apt" "$(dpkg --print-architecture)"
(cd "$work" && apt-get "${apt_opts[@]}" download qemu-user >&2)
deb="$(ls "$work"/qemu-user_*.deb)"
partial="$CACHE/.qemu.$$"
rm -rf "$partial"
mkdir -p "$partial"
dpkg-deb -x "$deb" "$partial"
version_ok "$partial/usr/bin/qemu-aarch64" || {
    echo "error: the qemu-aarch64 in $deb does not run here or is older than 10" >&2
    exit 1
}
rm -rf "$TARGET"
mv "$partial" "$TARGET"
echo "$TARGET/usr/bin/qemu-aarch64"
