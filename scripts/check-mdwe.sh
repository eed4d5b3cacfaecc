#!/usr/bin/env bash
# Does the worker work under systemd's MemoryDenyWriteExecute=yes? Runs the
# real worker on fixture models as it is, and under the same rules
# (scripts/mdwe-run.c: the seccomp filter of systemd <= 254, and the
# kernel's PR_SET_MDWE that newer systemd uses), then compares with what
# systemd/precisiond.service says.
#
# Finding on x86_64 with libtorch 2.13 (Nov 2026): under either rule oneDNN
# cannot make its generated kernels executable, so convolutions fail with
# "could not create a primitive", BF16 fails and a quantized model does not
# load. Hence MemoryDenyWriteExecute=no in the unit.
#
# Usage: scripts/check-mdwe.sh [PRECISIOND_WORKER]   (needs a C compiler)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
worker=$(realpath "${1:-$here/target/release/precisiond-worker}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/mdwe-run" "$here/scripts/mdwe-run.c"

# A rule this kernel cannot apply is said, on stderr and in the test
# summary `make test` prints (tests/common/skip.rs writes the same log).
skipped() {
    echo "SKIPPED check-mdwe: $1" >&2
    echo "[check-mdwe] SKIPPED check-mdwe: $1" >>"$(dirname "$worker")/skipped-tests.txt"
}

broken=0
checked=0
for model in cnn_residual mlp prequantized; do
    cp "$here/tests/fixtures/models/$model.pt" "$work/"
    [ -f "$here/tests/fixtures/models/$model.pt.toml" ] && cp "$here/tests/fixtures/models/$model.pt.toml" "$work/"
    for rule in none seccomp prctl; do
        wrap=()
        [ "$rule" != none ] && wrap=("$work/mdwe-run" "--$rule")
        out="$work/$model.$rule.report.toml"
        rc=0
        "${wrap[@]}" "$worker" run "$work/$model.pt" --precisions fp32,bf16,int8 \
            --max-seconds 0.3 --no-probe --out "$out" >/dev/null 2>"$work/stderr" || rc=$?
        if [ "$rule" != none ] && [ "$rc" = 125 ]; then
            # mdwe-run could not set the rule (PR_SET_MDWE needs Linux 6.3):
            # a worker that never ran under it proves nothing either way.
            skipped "$model under $rule: this kernel refuses the rule ($(tail -n 1 "$work/stderr"))"
            continue
        fi
        [ "$rule" != none ] && checked=$((checked + 1))
        summary=$(awk -F' = ' '
            /^status = / && !top { top = $2; next }
            /^precision = / { p = $2 }
            /^status = / && p { printf "%s:%s ", p, $2; p = "" }
            END { printf "report:%s", top ? top : "none" }' "$out" 2>/dev/null | tr -d '"')
        [ -f "$out" ] || summary="no report"
        printf '%-13s %-8s %s\n' "$model" "$rule" "$summary"
        if [ "$rule" = none ]; then
            baseline=$summary
        elif [ "$summary" != "$baseline" ]; then
            broken=1
        fi
    done
done

if [ "$checked" = 0 ]; then
    skipped "the worker under MemoryDenyWriteExecute: this kernel applies neither rule"
    exit 0
fi

setting=$(sed -n 's/^MemoryDenyWriteExecute=//p' "$here/systemd/precisiond.service")
if [ "$broken" = 1 ] && [ "$setting" = yes ]; then
    echo "check-mdwe: the worker fails under MemoryDenyWriteExecute, but the unit sets it: set MemoryDenyWriteExecute=no" >&2
    exit 1
elif [ "$broken" = 1 ]; then
    echo "check-mdwe: the worker fails under MemoryDenyWriteExecute; the unit rightly leaves it off"
else
    echo "check-mdwe: the worker works under MemoryDenyWriteExecute (unit: ${setting:-unset}); it could be turned on"
fi
