#!/usr/bin/env bash
# Installs Debian 13's libtorch 2.6 for arm64 (package libtorch-dev and
# everything it depends on) into precisiond's cache, once, and prints the
# folder it made:
#
#   DIR/sysroot    the packages' files (glibc 2.41, libstdc++ 14, OpenMP,
#                  reference BLAS/LAPACK, libtorch 2.6), for linking and
#                  for qemu's -L
#   DIR/libtorch   include/ and lib/ as torch-sys and worker/build.rs want
#   DIR/linkdir    libstdc++.so for the linker (the -dev symlink lives in a
#                  gcc-14 folder the cross gcc 12 does not search)
#
# Why: PyPI's aarch64 libtorch is built for ARMv8.2-A and stops with an
# illegal instruction on ARMv8.0 cores (Raspberry Pi 3/4, Jetson
# Nano/TX1/TX2); Debian builds for the armv8-a baseline. On a Debian 13
# board itself, `apt install libtorch-dev` gives the same files.
# DEBIAN_LIBTORCH_ARM64 set by the user is used as it is.
set -euo pipefail

CACHE="${PRECISIOND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/precisiond}"
TARGET="$CACHE/debian-libtorch-arm64"

if [ -n "${DEBIAN_LIBTORCH_ARM64:-}" ]; then
    echo "$DEBIAN_LIBTORCH_ARM64"
    exit 0
fi
if [ -f "$TARGET/.complete" ]; then
    echo "$TARGET"
    exit 0
fi

command -v apt-get >/dev/null || { echo "error: apt-get is needed to fetch Debian's arm64 libtorch" >&2; exit 1; }
echo "fetching Debian 13's arm64 libtorch-dev and its dependencies into $TARGET (about 150 MB, once per cache)" >&2
mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/.debian-libtorch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
apt="$work/apt"
. "$(dirname "$0")/apt-private.sh"
apt_private "$apt" arm64
apt-get "${apt_opts[@]}" install -y -qq --download-only --no-install-recommends libtorch-dev >&2
root="$work/out"
mkdir -p "$root/sysroot" "$root/libtorch/include" "$root/linkdir"
for deb in "$apt"/cache/archives/*.deb; do
    dpkg-deb -x "$deb" "$root/sysroot"
done
lib=usr/lib/aarch64-linux-gnu
# What dpkg would have made: the merged-/usr link and the BLAS/LAPACK
# alternatives.
ln -sfn usr/lib "$root/sysroot/lib"
ln -sfn blas/libblas.so.3 "$root/sysroot/$lib/libblas.so.3"
ln -sfn lapack/liblapack.so.3 "$root/sysroot/$lib/liblapack.so.3"
# Only libtorch's own headers: the sysroot's C headers must not shadow the
# cross compiler's.
for dir in ATen c10 caffe2 torch kineto google; do
    [ -e "$root/sysroot/usr/include/$dir" ] && ln -sfn "../../sysroot/usr/include/$dir" "$root/libtorch/include/$dir"
done
ln -sfn "../sysroot/$lib" "$root/libtorch/lib"
ln -sfn "../sysroot/$lib/libstdc++.so.6" "$root/linkdir/libstdc++.so"
[ -f "$root/sysroot/$lib/libtorch_cpu.so" ] || { echo "error: no libtorch_cpu.so in Debian's packages" >&2; exit 1; }
touch "$root/.complete"
rm -rf "$TARGET"
mv "$root" "$TARGET"
echo "$TARGET"
