#!/usr/bin/env bash
# GPU checks for precisiond's CUDA and TensorRT paths (issue 6), for a session
# lent a machine with an NVIDIA GPU. Nothing here has run on a GPU yet.
#
#   benches/gpu/run.sh            # everything below, results in $OUT (or a temp folder)
#   SKIP_MAKE_TEST=1 benches/gpu/run.sh   # only detect + the CUDA runs (a few minutes less)
#
# Needs libtorch 2.13.0 with CUDA: $LIBTORCH, else the PyPI wheel in
# precisiond's cache (scripts/install-libtorch.sh; needs the network once),
# else a Python torch 2.13 on the machine. A first build compiles torch-sys
# and the shim: a few minutes on 16 cores.
#
# What it checks (and prints, for the session's note):
#  1. `make test` passes on the GPU machine;
#  2. `precisiond detect` lists cuda0 with its compute capability and probe;
#  3. the worker loads libtorch_cuda at run time (the GPU is there) and libtorch sees the GPU;
#  4. `precisiond run --devices auto` on fixture models times cuda:0 in
#     fp32/fp16/bf16, with device synchronisation (`timing`), peak device
#     memory from the CUDA caching allocator and host peak RSS, and int8 on
#     cuda:0 is either a TensorRT result (trtexec found, ONNX beside the
#     model) or `unsupported` with the reason, never a timing of FP32.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$(mktemp -d /tmp/precisiond-gpu.XXXXXX)}"
mkdir -p "$OUT"
echo "results in $OUT"
failures=()
fail() {
    echo "FAIL: $*"
    failures+=("$*")
}

if [ -z "${LIBTORCH:-}" ]; then
    LIBTORCH="$(scripts/install-libtorch.sh 2>"$OUT/install-libtorch.log")" || LIBTORCH=""
fi
if [ -z "$LIBTORCH" ]; then
    LIBTORCH="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)"
fi
if [ -z "$LIBTORCH" ] || [ ! -d "$LIBTORCH/lib" ]; then
    echo "no libtorch: set LIBTORCH (see the header of this script)"
    exit 2
fi
export LIBTORCH
echo "LIBTORCH=$LIBTORCH"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
ls "$LIBTORCH/lib/libtorch_cuda.so" >/dev/null 2>&1 || fail "this libtorch has no libtorch_cuda.so (CPU-only build)"

# 1. the test suite
if [ -z "${SKIP_MAKE_TEST:-}" ]; then
    if make test >"$OUT/make-test.log" 2>&1; then
        echo "make test: passed"
    else
        fail "make test (see $OUT/make-test.log)"
        grep -E "^test .* FAILED|panicked|^failures:" "$OUT/make-test.log" | head -40
    fi
else
    cargo build --release --locked --bins >"$OUT/build.log" 2>&1 || { fail "build"; tail -30 "$OUT/build.log"; exit 1; }
fi

# 2. detect
target/release/precisiond detect | tee "$OUT/detect.txt"
target/release/precisiond detect --format toml >"$OUT/detect.toml"
grep -q '^\[cuda0\]' "$OUT/detect.toml" || fail "detect lists no [cuda0]"
grep -q "skipped: libtorch in this binary cannot use CUDA" "$OUT/detect.toml" && fail "the worker's libtorch cannot use CUDA"

# 3. linking
grep -q 'libtorch_cuda.so loaded' "$OUT/detect.toml" || fail "the worker did not load libtorch_cuda although a GPU is here"
readelf -d target/release/precisiond | grep -q 'libtorch' && fail "supervisor links libtorch"

# 4. CUDA runs of fixture models
if command -v trtexec >/dev/null || [ -x /usr/src/tensorrt/bin/trtexec ]; then
    echo "TensorRT's trtexec is present (int8 on cuda:0 needs an ONNX file beside the model too)"
else
    echo "no trtexec: int8 on cuda:0 must be unsupported, with the reason"
fi
for name in cnn_residual.pt mlp.pt transformer_block.pt; do
    cp "tests/fixtures/models/$name" "$OUT/"
    [ -f "tests/fixtures/models/$name.toml" ] && cp "tests/fixtures/models/$name.toml" "$OUT/"
    echo "== $name"
    /usr/bin/time -v target/release/precisiond run "$OUT/$name" --devices auto \
        --precisions fp32,fp16,bf16,int8 --max-seconds 2 >"$OUT/$name.summary.txt" 2>"$OUT/$name.time.txt" ||
        fail "$name: precisiond run failed"
    cat "$OUT/$name.summary.txt"
    grep -E "Maximum resident|Elapsed" "$OUT/$name.time.txt"
    report="$OUT/$name.report.toml"
    python3 - "$report" <<'EOF' || fail "$name: report checks"
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
r = tomllib.load(open(sys.argv[1], "rb"))
cuda = [x for x in r["results"] if x["device"].startswith("cuda:")]
assert cuda, "no cuda results"
bad = []
for x in cuda:
    line = f'{x["device"]} {x["precision"]} {x["method"]} {x["status"]}'
    lat = x.get("latency_ms", {})
    print(line, "median %.4f ms" % lat["median"] if lat else x["reason"],
          "peak_dev=%s" % x.get("peak_device_memory_bytes"), "rss=%s" % x.get("peak_host_rss_bytes"),
          "speedup=%s" % x.get("speedup_vs_fp32"), "cos=%s" % x.get("accuracy", {}).get("cosine"))
    if x["precision"] in ("fp32", "fp16") and x["method"] == "cast" and x["status"] != "ok":
        bad.append(line + ": " + x["reason"])
    if x["status"] == "ok" and x["method"] == "cast":
        if "synchronised" not in x.get("timing", ""): bad.append(line + ": no synchronised timing")
        if not x.get("peak_device_memory_bytes"): bad.append(line + ": no peak device memory")
        if not x.get("peak_host_rss_bytes"): bad.append(line + ": no host peak RSS")
    if x["precision"] == "int8" and x["status"] == "ok" and x["method"] != "tensorrt":
        bad.append(line + ": int8 on a GPU that is not TensorRT")
    if x["precision"] == "int8" and x["status"] != "ok":
        print("   int8 reason:", x["reason"])
assert not bad, bad
EOF
done

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "ALL GPU CHECKS PASSED (results in $OUT)"
else
    printf 'FAILED: %s\n' "${failures[@]}"
    exit 1
fi
