#!/usr/bin/env bash
# `make install` into a throwaway DESTDIR, checked: what it copies stays
# under 700 MB, the unit starts the installed binary, the installed worker
# resolves libtorch from the installed tree (the service user cannot read
# the build user's cache), the installed precisiond measures a fixture
# model, and one calling torchvision's operators with the installed
# torchvision library (an empty cache); then `make uninstall` leaves only
# the admin's config.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-install: $*" >&2; exit 1; }
dest="$(mktemp -d)"
trap 'rm -rf "$dest"' EXIT

make --no-print-directory install DESTDIR="$dest" PREFIX=/usr >/dev/null
size_mb="$(du -sm "$dest" | cut -f1)"
[ "$size_mb" -lt 700 ] || fail "make install copied $size_mb MB"
grep -q '^ExecStart=/usr/bin/precisiond ' "$dest/lib/systemd/system/precisiond.service" \
    || fail "the installed unit does not start /usr/bin/precisiond"
libs="$(ldd "$dest/usr/bin/precisiond-worker")"
for lib in libtorch_cpu.so libc10.so; do
    grep "$lib => " <<<"$libs" | grep -q "$dest/usr/bin/../lib/precisiond/torch/lib/$lib" \
        || fail "$lib does not come from the installed tree: $libs"
done
work="$dest/work"
mkdir -p "$work"
cp tests/fixtures/models/mlp.pt "$work/"
env -u PRECISIOND_WORKER "$dest/usr/bin/precisiond" run "$work/mlp.pt" --no-probe --threads 2 \
    --max-seconds 0.3 --devices cpu --precisions fp32 >/dev/null 2>&1 || fail "the installed precisiond cannot run"
# torchvision's operators from the installed tree, with nothing in the cache.
cp tests/fixtures/models/torchvision_ops.pt tests/fixtures/models/torchvision_ops.pt.toml "$work/"
env -u PRECISIOND_WORKER PRECISIOND_CACHE="$dest/no-cache" "$dest/usr/bin/precisiond" run \
    "$work/torchvision_ops.pt" --no-probe --threads 2 --max-seconds 0.3 --devices cpu \
    --precisions fp32 >/dev/null 2>&1 \
    || fail "the installed worker cannot run a model calling torchvision's operators: $(grep '^error' "$work/torchvision_ops.pt.report.toml" || true)"
rm -rf "$work"
make --no-print-directory uninstall DESTDIR="$dest" PREFIX=/usr >/dev/null
left="$(cd "$dest" && find . -type f)"
[ "$left" = ./etc/precisiond/precisiond.toml ] || fail "make uninstall left: $left"
echo "check-install: make install copied $size_mb MB, the installed worker uses the installed libtorch, make uninstall left only the config"
