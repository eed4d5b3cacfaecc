#!/usr/bin/env bash
# Checks systemd/precisiond.tmpfiles with systemd-tmpfiles itself: applied
# (--root) to a copy of a recorded RAPL sysfs tree
# (tests/fixtures/energy/rapl_intel), it must give the precisiond group
# read access to every energy_uj counter, MSR and MMIO zones and subzones,
# and change nothing else.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
rules="$here/systemd/precisiond.tmpfiles"
tree="${PRECISIOND_RAPL_TREE:-$here/tests/fixtures/energy/rapl_intel}"
fail() { echo "check-tmpfiles: $*" >&2; exit 1; }
command -v systemd-tmpfiles >/dev/null || fail "systemd-tmpfiles is missing (apt-get install systemd)"
[ -d "$tree/sys/class/powercap" ] || fail "no recorded RAPL tree in $tree"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp -a "$tree/." "$root/"
mkdir -p "$root/etc"
echo "root:x:0:" > "$root/etc/group"
echo "precisiond:x:998:" >> "$root/etc/group"
echo "root:x:0:0::/root:/bin/sh" > "$root/etc/passwd"
find "$root/sys" -name energy_uj -exec chmod 0400 {} +
find "$root/sys" -name energy_uj -exec chown 0:0 {} +

systemd-tmpfiles --create --root="$root" "$rules"

counters=$(find "$root/sys" -name energy_uj | wc -l)
[ "$counters" -gt 0 ] || fail "the recorded tree has no energy_uj"
while IFS= read -r f; do
    got=$(stat -c '%a %u:%g' "$f")
    [ "$got" = "440 0:998" ] || fail "${f#"$root"} is $got, wanted 440 0:998 (root:precisiond)"
done < <(find "$root/sys" -name energy_uj)
# Nothing else changed: max_energy_range_uj keeps its mode.
while IFS= read -r f; do
    [ "$(stat -c %g "$f")" = 0 ] || fail "${f#"$root"} changed group"
done < <(find "$root/sys" -name max_energy_range_uj)
echo "check-tmpfiles: $counters energy_uj counters readable by the precisiond group, nothing else changed"
