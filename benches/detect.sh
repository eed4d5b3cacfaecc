#!/usr/bin/env bash
# Measured bar for `precisiond detect` (issue 3): wall time with the probe,
# and the probe's verdicts, over several runs. Run on a quiet machine:
#   benches/detect.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/precisiond
runs="${1:-5}"
for i in $(seq "$runs"); do
    start=$(date +%s.%N)
    out=$("$bin" detect --format toml)
    end=$(date +%s.%N)
    fp16=$(printf '%s\n' "$out" | awk '/^\[cpu.fp16\]/{s=1} s && /^probe_speedup_vs_fp32/{print $3; exit}')
    bf16=$(printf '%s\n' "$out" | awk '/^\[cpu.bf16\]/{s=1} s && /^probe_speedup_vs_fp32/{print $3; exit}')
    acc16=$(printf '%s\n' "$out" | awk '/^\[cpu.fp16\]/{s=1} s && /^accelerated/{print $3; exit}')
    accb=$(printf '%s\n' "$out" | awk '/^\[cpu.bf16\]/{s=1} s && /^accelerated/{print $3; exit}')
    printf 'run %d: %.3f s  fp16 %sx (accelerated=%s)  bf16 %sx (accelerated=%s)\n' \
        "$i" "$(awk "BEGIN{print $end - $start}")" "$fp16" "$acc16" "$bf16" "$accb"
done
echo
"$bin" detect
