#!/usr/bin/env bash
# The Debian packages, installed as a user would and checked: `make
# test-deb` builds them (amd64, and arm64 from the aarch64 build) and runs
# this. Each pair (precisiond, precisiond-libtorch-cpu) is unpacked into a
# throwaway root with dpkg-deb -x; then: lintian finds no error; the files,
# their modes and the conffile are there; the maintainer scripts create the
# user and enable, start and stop the unit; the installed worker resolves
# libtorch from the installed tree only (never the build cache); and the
# installed precisiond measures a fixture model (arm64: under qemu).
# precisiond-armv8.0 (arm64, for ARMv8.0 boards) is checked against Debian
# 13's libtorch2.6 in PRECISIOND_ARMV8_0_SYSROOT, on an emulated Cortex-A72.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-deb: $*" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

for arch in amd64 arm64; do
    main=(target/debian/precisiond_*_"$arch".deb)
    torch=(target/debian/precisiond-libtorch-cpu_*_"$arch".deb)
    [ -f "${main[0]}" ] && [ -f "${torch[0]}" ] || fail "no $arch packages in target/debian: make deb"
    for deb in "${main[0]}" "${torch[0]}"; do
        errors="$(lintian "$deb" 2>/dev/null | grep '^E:' || true)"
        [ -z "$errors" ] || fail "lintian errors in $deb: $errors"
        dpkg-deb -x "$deb" "$root/$arch"
    done
    r="$root/$arch"

    for f in usr/bin/precisiond usr/bin/precisiond-worker; do
        [ "$(stat -c %a "$r/$f")" = 755 ] || fail "$arch: $f is not 0755"
    done
    [ "$(stat -c %a "$r/etc/precisiond/precisiond.toml")" = 644 ] || fail "$arch: config is not 0644"
    for f in usr/lib/systemd/system/precisiond.service usr/lib/sysusers.d/precisiond.conf \
             usr/lib/tmpfiles.d/precisiond.conf \
             usr/share/doc/precisiond/examples/precisiond-cuda.conf usr/lib/precisiond/torch/lib/libtorch_cpu.so; do
        [ -f "$r/$f" ] || fail "$arch: $f is missing"
    done
    grep -q '^ExecStart=/usr/bin/precisiond ' "$r/usr/lib/systemd/system/precisiond.service" \
        || fail "$arch: the unit does not start /usr/bin/precisiond"
    dpkg-deb -I "${main[0]}" conffiles | grep -qx /etc/precisiond/precisiond.toml \
        || fail "$arch: the config is not a conffile"
    postinst="$(dpkg-deb -I "${main[0]}" postinst)"
    for step in systemd-sysusers 'deb-systemd-helper enable' 'deb-systemd-invoke $_dh_action' \
                'install -d -o precisiond -g precisiond -m 2775 /var/lib/precisiond'; do
        grep -qF -- "$step" <<<"$postinst" || fail "$arch: postinst lacks: $step"
    done
    dpkg-deb -I "${main[0]}" prerm | grep -q 'deb-systemd-invoke stop precisiond.service' \
        || fail "$arch: prerm does not stop the service"
    size_mb="$(du -sm "$r/usr/lib/precisiond" | cut -f1)"
    [ "$size_mb" -lt 700 ] || fail "$arch: libtorch takes $size_mb MB installed"

    # Which file each library resolves to: the loader's own answer.
    if [ "$arch" = amd64 ]; then
        libs="$(ldd "$r/usr/bin/precisiond-worker")"
    else
        qemu="$(scripts/install-qemu.sh)"
        libs="$("$qemu" -L /usr/aarch64-linux-gnu -E LD_TRACE_LOADED_OBJECTS=1 "$r/usr/bin/precisiond-worker")"
    fi
    grep -q 'not found' <<<"$libs" && fail "$arch: unresolved libraries:\n$libs"
    for lib in libtorch_cpu.so libc10.so libcudart.so.13 libcupti.so.13; do
        grep "$lib => " <<<"$libs" | grep -q "$r/usr/bin/../lib/precisiond/torch/lib/$lib" \
            || fail "$arch: $lib does not come from the installed tree:\n$libs"
    done

    work="$root/work-$arch"
    mkdir -p "$work"
    cp tests/fixtures/models/mlp.pt "$work/"
    run=(run "$work/mlp.pt" --no-probe --threads 2 --max-seconds 0.3 --devices cpu --precisions fp32,int8)
    if [ "$arch" = amd64 ]; then
        env -u PRECISIOND_WORKER "$r/usr/bin/precisiond" "${run[@]}" >"$work/out.txt" 2>&1 \
            || fail "$arch: precisiond run failed: $(cat "$work/out.txt")"
    else
        env -u PRECISIOND_WORKER scripts/aarch64-run.sh "$r/usr/bin/precisiond" "${run[@]}" >"$work/out.txt" 2>&1 \
            || fail "$arch: precisiond run failed: $(cat "$work/out.txt")"
    fi
    grep -q '^status = "ok"' "$work/mlp.pt.report.toml" || fail "$arch: the report does not say ok"
    [ "$(grep -c '^status = "ok"' "$work/mlp.pt.report.toml")" -ge 3 ] || fail "$arch: not every result is ok"
    echo "check-deb: $arch: lintian clean of errors, files and scripts as they should be, libtorch $size_mb MB from the installed tree, a fixture measured"
done

# precisiond-armv8.0: Debian's libtorch2.6 is its libtorch.
sysroot="${PRECISIOND_ARMV8_0_SYSROOT:?the Debian arm64 sysroot (scripts/install-libtorch-debian-arm64.sh)/sysroot}"
deb=(target/debian/precisiond-armv8.0_*_arm64.deb)
[ -f "${deb[0]}" ] || fail "no precisiond-armv8.0 package in target/debian: make deb"
errors="$(lintian "${deb[0]}" 2>/dev/null | grep '^E:' || true)"
[ -z "$errors" ] || fail "lintian errors in ${deb[0]}: $errors"
dpkg-deb -f "${deb[0]}" Depends | grep -q 'libtorch2.6' || fail "precisiond-armv8.0 does not depend on libtorch2.6"
dpkg-deb -f "${deb[0]}" Conflicts | grep -qx 'precisiond' || fail "precisiond-armv8.0 does not conflict with precisiond"
r="$root/armv8.0"
dpkg-deb -x "${deb[0]}" "$r"
dpkg-deb -I "${deb[0]}" conffiles | grep -qx /etc/precisiond/precisiond.toml || fail "armv8.0: the config is not a conffile"
qemu="$(scripts/install-qemu.sh)"
libs="$("$qemu" -L "$sysroot" -cpu cortex-a72 -E LD_TRACE_LOADED_OBJECTS=1 "$r/usr/bin/precisiond-worker")"
torch_cpu="$(sed -n 's/.*libtorch_cpu\.so[.0-9]* => \([^ ]*\).*/\1/p' <<<"$libs")"
[ -n "$torch_cpu" ] || fail "armv8.0: libtorch_cpu.so unresolved:
$libs"
# The file Debian's libtorch2.6 package installs (qemu's -L puts the
# sysroot in front of absolute paths).
[ -e "$sysroot$torch_cpu" ] && torch_cpu="$sysroot$torch_cpu"
[ "$(readlink -f "$torch_cpu")" = "$(readlink -f "$sysroot/usr/lib/aarch64-linux-gnu/libtorch_cpu.so.2.6")" ] \
    || fail "armv8.0: libtorch_cpu.so is $torch_cpu, not Debian's libtorch2.6"
work="$root/work-armv8.0"
mkdir -p "$work"
cp tests/fixtures/models/mlp.pt "$work/"
env -u PRECISIOND_WORKER AARCH64_SYSROOT="$sysroot" scripts/aarch64-run.sh --cpu cortex-a72 \
    "$r/usr/bin/precisiond" run "$work/mlp.pt" --no-probe --threads 2 --max-seconds 0.3 --devices cpu \
    --precisions fp32,int8 >"$work/out.txt" 2>&1 || fail "armv8.0: precisiond run failed: $(cat "$work/out.txt")"
[ "$(grep -c '^status = "ok"' "$work/mlp.pt.report.toml")" -ge 3 ] || fail "armv8.0: not every result is ok"
grep -q '^libtorch = "2.6.0"' "$work/mlp.pt.report.toml" || fail "armv8.0: the report names another libtorch"
echo "check-deb: arm64 ARMv8.0: lintian clean of errors, depends on libtorch2.6, Debian's libtorch_cpu loaded, a fixture measured on an emulated Cortex-A72"
