#!/usr/bin/env python3
"""Runs precisiond on every model of the zoo (benches/zoo/make_zoo.py) and
prints what a new user gets: per precision how many models are ok, a row per
model, and the failures grouped by class (the error message's leading words).

    python3 benches/zoo/run_zoo.py [NAME ...] [--zoo DIR] [--jobs 1]
        [--timeout 600] [--max-seconds 1] [--report-only]

NAME restricts the run to those models (file names without .pt). The zoo is
built first where a model file is missing (Python with torch and the zoo's
packages, installed into the cache by scripts/install-torch-full.sh and
scripts/install-zoo.sh). Each model gets
`precisiond run MODEL --precisions fp32,fp16,bf16,int8 --max-seconds 1`
with a time limit; a model that fails, hangs or writes no report does not
stop the others. The report is MODEL.pt.report.toml beside the model; one
older than this run counts as no report. The printed text is also written
to ZOO/zoo-table.md (--table to change).

A precision counts ok for a model when ANY of its results for that
precision (one per method: cast and autocast, static and dynamic PTQ...) is
ok; the per-method counts are printed below the table. Needs only Python's
standard library (3.11: tomllib).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRECISIONS = ["fp32", "fp16", "bf16", "int8"]
CACHE = Path(
    os.environ.get("PRECISIOND_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "precisiond"
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="models to run (default: the whole zoo)")
    p.add_argument("--zoo", type=Path, default=CACHE / "zoo-models")
    p.add_argument("--precisiond", type=Path, default=REPO / "target/release/precisiond")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--max-seconds", default="1")
    p.add_argument(
        "--threads",
        help="precisiond's --threads (default: its own); 1 keeps a busy machine's "
        "timings from collapsing under thread oversubscription",
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds per model")
    p.add_argument("--jobs", type=int, default=1, help="models measured at once")
    p.add_argument("--table", type=Path, help="default: ZOO/zoo-table.md")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: summarise the reports already beside the models",
    )
    return p.parse_args()


def zoo_python_path():
    parts = [
        subprocess.run([REPO / "scripts" / s], check=True, capture_output=True, text=True).stdout.strip()
        for s in ("install-torch-full.sh", "install-zoo.sh")
    ]
    return ":".join(parts)


def all_names(zoo):
    """Every model the zoo script knows; needs torch to list them."""
    env = dict(os.environ, PYTHONPATH=zoo_python_path())
    out = subprocess.run(
        [sys.executable, REPO / "benches/zoo/make_zoo.py", "--list"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return [line.split("\t")[0] for line in out.splitlines() if line]


def build_missing(zoo, names):
    missing = [n for n in names if not (zoo / f"{n}.pt").exists()]
    if not missing:
        return
    print(f"building {len(missing)} zoo model(s) into {zoo}", file=sys.stderr)
    env = dict(os.environ, PYTHONPATH=zoo_python_path())
    # A model that cannot be built is reported as such below; the others run.
    subprocess.run(
        [sys.executable, REPO / "benches/zoo/make_zoo.py", zoo, "--only", ",".join(missing)],
        env=env,
    )


def report_path(model):
    return Path(str(model) + ".report.toml")


def run_one(args, name):
    model = args.zoo / f"{name}.pt"
    started = time.time()
    cmd = [
        str(args.precisiond), "run", str(model),
        "--precisions", args.precisions, "--max-seconds", args.max_seconds,
    ]
    if args.threads:
        cmd += ["--threads", args.threads]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        tail = (done.stderr or "").strip().splitlines()[-3:]
        outcome = f"exit {done.returncode}"
    except subprocess.TimeoutExpired as e:
        tail = ((e.stderr or b"").decode(errors="replace")).strip().splitlines()[-3:]
        outcome = f"timed out after {args.timeout:.0f} s"
    took = time.time() - started
    print(f"{name}: {outcome} in {took:.0f} s", file=sys.stderr, flush=True)
    return {"outcome": outcome, "seconds": took, "stderr_tail": tail, "started": started}


# ------------------------------------------------------------------- reading


def load_report(zoo, name, not_before=None):
    path = report_path(zoo / f"{name}.pt")
    if not path.exists():
        return None
    if not_before is not None and path.stat().st_mtime < not_before - 1:
        return None
    with open(path, "rb") as f:
        return tomllib.load(f)


def error_line(text):
    """The informative line of an error: libtorch wraps the real message in
    a TorchScript traceback, whose last "Error:" line says what went wrong."""
    if not text:
        return ""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if re.match(r"^[A-Za-z.]*(Error|Exception): ", l)]
    line = errors[-1] if errors else lines[0]
    return re.sub(r"^[A-Za-z.]*(Error|Exception): ", "", line)


def error_class(text, words=8):
    """Groups errors by their leading words, with the precision, numbers,
    quoted names, paths and shapes blanked, so one cause across models and
    precisions is one class."""
    line = error_line(text)
    line = line.replace("Internal torch error: ", "")
    line = re.sub(r"^the model's forward\(\) failed on inputs .*?\((\w+)\): ", r"forward() failed on \1 inputs: ", line)
    line = re.sub(r"\b(fp32|fp16|bf16|int8)\b", "P", line)
    line = re.sub(r"\b(CPU)?(Half|BFloat16)(Type)?\b", "P", line)
    line = re.sub(r"(?<!\S)/\S+", "PATH", line)
    line = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "'…'", line)
    line = re.sub(r"\[[^\]]*\]", "[…]", line)
    line = re.sub(r"\b\d+(\.\d+)?\b", "N", line)
    # The stage (before the first colon) whole, then the cause's first words.
    stage, _, cause = line.partition(": ")
    return (stage + (": " + " ".join(cause.split()[:words]) if cause else "")) or "(no message)"


def short(text, width=90):
    line = error_line(text)
    return line if len(line) <= width else line[: width - 1] + "…"


def summarize(zoo, names, runs, manifest):
    models = []
    for name in names:
        run = runs.get(name)
        report = load_report(zoo, name, run["started"] if run else None)
        entry = {"name": name, "family": manifest.get(name, {}).get("family", "?"), "run": run}
        model_path = zoo / f"{name}.pt"
        entry["bytes"] = model_path.stat().st_size if model_path.exists() else None
        if not model_path.exists():
            entry["missing"] = "not built (see make_zoo.py's output)"
        elif report is None:
            why = run["outcome"] if run else "never run"
            tail = " / ".join(run["stderr_tail"]) if run else ""
            entry["missing"] = f"no report ({why}){': ' + tail if tail else ''}"
        else:
            entry["report"] = report
        models.append(entry)
    return models


def results_of(entry):
    report = entry.get("report")
    if report is None:
        return []
    return [r for r in report.get("results", []) if r.get("device", "cpu") == "cpu"]


def median(result):
    return (result.get("latency_ms") or {}).get("median")


def faster(result, fp32):
    """speedup_vs_fp32 > 1; where precisiond withheld it (a contended or
    throttled timing), the ratio of the two medians instead."""
    s = result.get("speedup_vs_fp32")
    if s is not None:
        return s > 1.0
    if fp32 is None or median(fp32) is None or median(result) is None:
        return False
    return median(fp32) / median(result) > 1.0


def fp32_of(results):
    return next((r for r in results if r["precision"] == "fp32" and r["status"] == "ok"), None)


def cell(entry, precision):
    if "report" not in entry:
        return "no report"
    rs = [r for r in results_of(entry) if r["precision"] == precision]
    if not rs:
        if entry["report"].get("status") == "failed":
            return "failed"
        return "—"
    parts = []
    for r in rs:
        s = f"{r['status']} {r.get('method', '?')}"
        if precision != "fp32" and r["status"] == "ok":
            if r.get("accuracy_ok") is False:
                s += " inaccurate"
            sp = r.get("speedup_vs_fp32")
            fp32 = fp32_of(results_of(entry))
            if sp is not None:
                s += f" ×{sp:.2f}"
            elif fp32 is not None and median(fp32) and median(r):
                # withheld by precisiond: the medians' ratio, marked
                s += f" ~×{median(fp32) / median(r):.2f}"
        parts.append(s)
    return "; ".join(parts)


def failures(entry):
    """(precision, method, message) for every failure of the model: a
    result not ok, or the model's own error where it failed as a whole."""
    out = []
    if "report" not in entry:
        out.append(("all", "-", entry["missing"]))
        return out
    report = entry["report"]
    rs = results_of(entry)
    if report.get("status") == "failed" and report.get("error"):
        covered = {r["precision"] for r in rs}
        if not rs or len(covered) < len(PRECISIONS):
            out.append(("all" if not rs else "model", "-", report["error"]))
    for r in rs:
        if r["status"] in ("failed", "unsupported"):
            out.append((r["precision"], r.get("method", "?"), r.get("reason", "") or r["status"]))
    return out


def render(models, precisions, command):
    n = len(models)
    lines = []
    w = lines.append
    w(f"# precisiond on the zoo: {n} models")
    w("")
    w(f"Command, per model: `{command}")
    w("")
    ok = {p: 0 for p in precisions}
    int8_good = 0
    per_method = defaultdict(lambda: [0, 0])  # (precision, method) -> [ok, results]
    no_report = [m for m in models if "report" not in m]
    for m in models:
        rs = results_of(m)
        for p in precisions:
            mine = [r for r in rs if r["precision"] == p]
            if any(r["status"] == "ok" for r in mine):
                ok[p] += 1
            for r in mine:
                k = (p, r.get("method", "?"))
                per_method[k][1] += 1
                per_method[k][0] += r["status"] == "ok"
        if "int8" in precisions and any(
            r["precision"] == "int8" and r["status"] == "ok" and r.get("accuracy_ok") is True and faster(r, fp32_of(rs))
            for r in rs
        ):
            int8_good += 1
    w("| | ok |")
    w("|---|---|")
    for p in precisions:
        extra = ""
        if p == "int8":
            extra = f"; ok, accurate (`accuracy_ok`) and faster than FP32: {int8_good}/{n}"
        w(f"| {p.upper()} | {ok[p]}/{n}{extra} |")
    w(f"| no report | {len(no_report)}/{n} |")
    w("")
    w(
        "Faster than FP32: `speedup_vs_fp32` > 1, or where precisiond withheld it "
        "(a contended or throttled timing) the ratio of the medians, shown as ~× below."
    )
    w("")
    w("Per method (results ok / results of that method):")
    w("")
    for (p, method), (good, total) in sorted(per_method.items(), key=lambda kv: (precisions.index(kv[0][0]), kv[0][1])):
        w(f"- {p.upper()} `{method}`: {good}/{total}")
    w("")

    w("## Per model")
    w("")
    w("| model | family | MB | " + " | ".join(p.upper() for p in precisions) + " | first error |")
    w("|---|---|---|" + "---|" * len(precisions) + "---|")
    for m in models:
        mb = f"{m['bytes'] / 1e6:.1f}" if m["bytes"] else "-"
        fails = failures(m)
        first = short(fails[0][2], 70).replace("|", "\\|") if fails else ""
        cells = " | ".join(cell(m, p) for p in precisions)
        w(f"| {m['name']} | {m['family']} | {mb} | {cells} | {first} |")
    w("")

    w("## Failures by class")
    w("")
    classes = defaultdict(list)
    for m in models:
        for precision, method, message in failures(m):
            classes[error_class(message)].append((m, precision, method, message))
    if not classes:
        w("No failures.")
    for key, items in sorted(classes.items(), key=lambda kv: -len({i[0]["name"] for i in kv[1]})):
        names = sorted({i[0]["name"] for i in items})
        by_precision = defaultdict(set)
        for m, precision, method, _ in items:
            by_precision[f"{precision.upper()} {method}"].add(m["name"])
        sized = [i[0] for i in items if i[0]["bytes"]]
        smallest = min(sized, key=lambda m: m["bytes"]) if sized else None
        w(f"### {key} ({len(names)} models)")
        w("")
        w("- where: " + ", ".join(f"{k} ×{len(v)}" for k, v in sorted(by_precision.items())))
        w("- models: " + ", ".join(names))
        if smallest:
            w(f"- smallest: {smallest['name']} ({smallest['bytes'] / 1e6:.1f} MB)")
        w(f"- message: {short(items[0][3], 300)}")
        w("")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    args.zoo = args.zoo.resolve()
    precisions = args.precisions.split(",")
    names = args.names
    if not names:
        listed = sorted(p.name[:-3] for p in args.zoo.glob("*.pt")) if args.zoo.exists() else []
        names = listed if args.report_only else all_names(args.zoo)
    if not args.report_only:
        build_missing(args.zoo, names)
    manifest_path = args.zoo / "zoo.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}

    runs = {}
    if not args.report_only:
        if not args.precisiond.exists():
            sys.exit(f"{args.precisiond} is missing: cargo build --release --workspace first")
        todo = [n for n in names if (args.zoo / f"{n}.pt").exists()]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for name, run in zip(todo, pool.map(lambda n: run_one(args, n), todo)):
                runs[name] = run

    command = "(reports read as they are: --report-only)`" if args.report_only else (
        f"precisiond run MODEL --precisions {args.precisions} --max-seconds {args.max_seconds}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`"
        f" (limit {args.timeout:.0f} s per model, {args.jobs} model(s) at a time)"
    )
    text = render(summarize(args.zoo, names, runs, manifest), precisions, command)
    print(text)
    table = args.table or args.zoo / "zoo-table.md"
    table.write_text(text)
    print(f"written to {table}", file=sys.stderr)


if __name__ == "__main__":
    main()
