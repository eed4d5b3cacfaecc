//! Finds libtorch, compiles the C++ shim against it and gives the binaries an
//! rpath to it, so `target/release/precisiond-worker` runs without
//! `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/shim.h");

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

    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
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
    let header = include.join("torch/headeronly/version.h");
    let text = std::fs::read_to_string(header).unwrap_or_default();
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
