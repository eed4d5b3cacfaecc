#!/usr/bin/env bash
# Builds the Debian packages with cargo-deb from binaries already built
# (make build, or make build-aarch64 for arm64), and prints their paths:
#
#   scripts/make-deb.sh x86_64|aarch64
#
# precisiond_<version>_<arch>.deb: the two binaries, the unit, the
# sysusers file, the default config (a conffile), the CUDA drop-in as an
# example. precisiond-libtorch-cpu_2.13.0_<arch>.deb: the CPU part of
# libtorch under /usr/lib/precisiond/torch/lib, versioned after libtorch so
# an upgrade of precisiond alone does not ship it again.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${1:?usage: scripts/make-deb.sh x86_64|aarch64|armv8.0}"
case "$arch" in
    x86_64) libtorch="$(scripts/install-libtorch-lean.sh x86_64)"; target=() ;;
    aarch64) libtorch="$(scripts/install-libtorch-aarch64.sh)"; target=(--target aarch64-unknown-linux-gnu) ;;
    armv8.0)
        # precisiond-armv8.0: its libtorch is Debian's own package.
        command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 >&2
        # Stripped here: cargo-deb strips only the binaries of its own build.
        mkdir -p target/armv8.0/deb
        aarch64-linux-gnu-strip --strip-unneeded -o target/armv8.0/deb/precisiond-worker \
            target/armv8.0/aarch64-unknown-linux-gnu/release/precisiond-worker
        cargo deb -p precisiond --no-build --target aarch64-unknown-linux-gnu --variant armv8-0 >&2
        ls target/debian/precisiond-armv8.0_*_arm64.deb
        exit 0 ;;
    *) echo "error: no package for $arch" >&2; exit 1 ;;
esac
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 >&2

# The libtorch package's files, where Cargo.toml's variant names them.
rm -rf target/deb-libtorch
mkdir -p target/deb-libtorch/lib
cp -a $(ls -d "$libtorch"/lib/*.so* | grep -v -e libtorch_python -e libshm) target/deb-libtorch/lib/

cargo deb -p precisiond --no-build "${target[@]}" >&2
cargo deb -p precisiond --no-build "${target[@]}" --variant libtorch-cpu --deb-version 2.13.0-1 >&2
deb_arch="$(case "$arch" in x86_64) echo amd64 ;; aarch64) echo arm64 ;; esac)"
# cargo-deb puts a copy of every package in target/debian/.
ls target/debian/precisiond_*_"$deb_arch".deb target/debian/precisiond-libtorch-cpu_2.13.0-1_"$deb_arch".deb
