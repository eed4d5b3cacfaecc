//! Finds libtorch, compiles the C++ shim against it and gives the worker an
//! rpath to it, so `target/release/precisiond-worker` runs (and finds
//! libtorch_cuda when it loads it) without `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    // The worker's own folder: this package's, or the one above it for the
    // tch-0.19 variant (worker/tch-0.19/), which builds the same sources.
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let csrc = [manifest.join("csrc"), manifest.join("../csrc")]
        .into_iter()
        .find(|d| d.join("shim.cpp").is_file())
        .expect("csrc/shim.cpp beside build.rs");
    println!("cargo:rerun-if-changed={}", csrc.join("shim.cpp").display());
    println!("cargo:rerun-if-changed={}", csrc.join("shim.h").display());

    // torch-sys needs the same variable; failing here first gives the
    // friendlier message.
    let libtorch = match env::var_os("LIBTORCH") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "LIBTORCH is not set. Run `make build` (it installs libtorch from PyPI's torch==2.13.0 \
             wheel into ~/.cache/precisiond) or `export LIBTORCH=$(scripts/install-libtorch.sh)`."
        ),
    };
    let lib = libtorch.join("lib");
    let include = libtorch.join("include");

    let mut shim = cc::Build::new();
    // libtorch 2.13's c10 has a device-generic allocator interface the
    // shim reads CUDA memory figures through; 2.6's (Debian's, for ARMv8.0
    // boards) has not, and those figures are then unavailable.
    let allocator_header = include.join("c10/core/CachingDeviceAllocator.h");
    if std::fs::read_to_string(allocator_header)
        .unwrap_or_default()
        .contains("struct C10_API DeviceAllocator")
    {
        shim.define("PRECISIOND_DEVICE_ALLOCATOR", "1");
    }
    shim.cpp(true)
        .file(csrc.join("shim.cpp"))
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        // libtorch's headers are noisy with -Wall; the shim's own warnings
        // are what matter and gcc still prints errors.
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false)
        .compile("precisiond_shim");

    println!("cargo:rustc-link-search=native={}", lib.display());
    // First the copy `make install` puts beside the binaries (a service user
    // cannot read the build user's cache), then the libtorch built against.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/precisiond/torch/lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // libtorch_cuda is not linked: the worker loads it at run time, and
    // only where the CUDA driver reports a GPU (worker/src/cuda.rs), so a
    // CPU-only machine never maps it or the CUDA libraries behind it.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-cfg=precisiond_libtorch_cuda");
    }
    println!("cargo:rustc-check-cfg=cfg(precisiond_libtorch_cuda)");
}
