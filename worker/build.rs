//! Finds libtorch, compiles the C++ shim against it and gives the binaries an
//! rpath to it, so `target/release/precisiond-worker` runs without
//! `LD_LIBRARY_PATH`.

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
    // The linker's --as-needed drops libtorch_cuda (nothing in the worker
    // calls it by name), and without it libtorch never registers CUDA:
    // tch::Cuda::is_available() is false even on a GPU. So the worker, and
    // only the worker, links it unconditionally when this libtorch has it
    // (a CPU-only libtorch has none, and the worker is then CPU-only). On
    // a machine without a GPU it loads, finds no device and carries on.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bin=precisiond-worker=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-cfg=precisiond_libtorch_cuda");
    }
    println!("cargo:rustc-check-cfg=cfg(precisiond_libtorch_cuda)");
    // The supervisor does not link libtorch, yet its failure reports name
    // the version the worker was built against.
    println!(
        "cargo:rustc-env=PRECISIOND_LIBTORCH_VERSION={}",
        header_version(&include)
    );
}

fn header_version(include: &std::path::Path) -> String {
    // torch/headeronly/ from 2.8 or so; torch/version.h (under the C++
    // API's include folder) before.
    let text = [
        include.join("torch/headeronly/version.h"),
        include.join("torch/csrc/api/include/torch/version.h"),
    ]
    .iter()
    .find_map(|h| std::fs::read_to_string(h).ok())
    .unwrap_or_default();
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")))
            .map(|v| v.trim().to_owned())
    };
    match (part("MAJOR"), part("MINOR"), part("PATCH")) {
        (Some(a), Some(b), Some(c)) => format!("{a}.{b}.{c}"),
        _ => "unknown".to_owned(),
    }
}
