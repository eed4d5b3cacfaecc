#!/usr/bin/env bash
# Checks the systemd unit: `systemd-analyze verify` must pass without a
# single warning, and `systemd-analyze security --offline=yes` must rate it
# 2.0 or lower ("OK" or better), with and without the CUDA drop-in.
#
# Usage: scripts/check-systemd.sh [PRECISIOND_BINARY]
# verify checks that ExecStart= is executable, so the unit is checked in a
# copy whose ExecStart points at the built binary (default
# target/release/precisiond) instead of /usr/bin.
# Needs systemd-analyze (Debian/Ubuntu: apt-get install systemd); it works
# without systemd running, in containers too.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary=$(realpath "${1:-$here/target/release/precisiond}")
max_exposure=2.0

if ! command -v systemd-analyze >/dev/null; then
    echo "check-systemd: systemd-analyze is missing; install it (apt-get install systemd)" >&2
    exit 1
fi
if [ ! -x "$binary" ]; then
    echo "check-systemd: $binary is missing; build it first (make build)" >&2
    exit 1
fi

units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
sed "s#^ExecStart=/usr/bin/precisiond #ExecStart=$binary #" \
    "$here/systemd/precisiond.service" >"$units/precisiond.service"
if ! grep -q "^ExecStart=$binary " "$units/precisiond.service"; then
    echo "check-systemd: ExecStart= in systemd/precisiond.service no longer starts /usr/bin/precisiond; update this script" >&2
    exit 1
fi

failed=0
check() { # $1: label; the unit (and its drop-ins) are in $units
    local label=$1 out level
    # Warnings (an unknown key, a bad value) leave the exit status at 0:
    # any output at all is a failure.
    if ! out=$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify precisiond.service 2>&1) || [ -n "$out" ]; then
        echo "check-systemd: systemd-analyze verify failed ($label):" >&2
        echo "$out" >&2
        failed=1
    else
        echo "check-systemd: verify passes ($label)"
    fi
    out=$(SYSTEMD_UNIT_PATH="$units:" systemd-analyze security --offline=yes precisiond.service 2>&1) || true
    level=$(echo "$out" | sed -n 's/.*Overall exposure level for precisiond.service: \([0-9.]*\).*/\1/p')
    if [ -z "$level" ]; then
        echo "check-systemd: systemd-analyze security gave no exposure level ($label):" >&2
        echo "$out" >&2
        failed=1
    elif awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l > m) }'; then
        echo "check-systemd: exposure level $level is over $max_exposure ($label); what counts:" >&2
        echo "$out" | grep '✗' >&2
        failed=1
    else
        echo "check-systemd: exposure level $level, at most $max_exposure ($label)"
    fi
}

check "precisiond.service"
mkdir "$units/precisiond.service.d"
cp "$here/systemd/precisiond-cuda.conf" "$units/precisiond.service.d/cuda.conf"
check "with the CUDA drop-in"
exit $failed
