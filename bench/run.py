"""ftcli's benchmark: every workload side by side in one run, a table of absolute figures, a table of
ratios against their targets, and the full results as JSON.

    .venv/bin/python bench/run.py [--only cls,sft,dpo,startup,generate,prep,serve] [--quick] [--out FILE]

`--quick` runs tiny sizes in a minute or two, to check the harness itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cls
import common
import dpo
import generate
import prep
import serve_load
import sft
import startup

WORKLOADS = {"cls": cls, "sft": sft, "dpo": dpo, "startup": startup, "generate": generate, "prep": prep,
             "serve": serve_load}
# What each workload reads; it is skipped, with a message, when any of it is missing.
NEEDS = {"cls": [common.DATA / "sst2" / "train.tsv", common.DATA / "sst2" / "validation.tsv", common.MINILM],
         "sft": [common.DATA / "alpaca" / "alpaca_5000.json", common.SMOL],
         "dpo": [common.DATA / "hh-rlhf" / "train.jsonl", common.SMOL],
         "startup": [],
         "generate": [common.DATA / "alpaca" / "alpaca_5000.json", common.SMOL],
         "prep": [common.DATA / "alpaca" / "alpaca_5000.json", common.DATA / "sst2" / "train.tsv", common.MINILM,
                  common.SMOL],
         "serve": [common.SMOL]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads to run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the harness")
    parser.add_argument("--out", default=str(common.ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    chosen = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")

    report = {"quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "versions": common.versions(),
              "load_average_start": os.getloadavg()[0], "workloads": {}, "skipped": {}}
    rows, checks = [], []
    with tempfile.TemporaryDirectory(prefix="ftcli-bench-") as tmp:
        for name in chosen:
            missing = [str(p) for p in NEEDS[name] if not p.exists()]
            if missing:
                report["skipped"][name] = f"missing {', '.join(missing)}"
                print(f"skipping {name}: missing {', '.join(missing)} "
                      "(public data goes in ../shared/data; `make models` builds the models)", file=sys.stderr)
                continue
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.perf_counter()
            try:
                outcome = WORKLOADS[name].run(work, args.quick)
            except RuntimeError as exc:  # a failed worker: report it, go on with the other workloads
                report["skipped"][name] = f"failed: {exc}"
                print(f"{name} failed: {exc}", file=sys.stderr)
                continue
            outcome["wall_s"] = round(time.perf_counter() - t0, 1)
            report["workloads"][name] = outcome
            rows += outcome["rows"]
            checks += outcome["checks"]

    report["load_average_end"] = os.getloadavg()[0]
    v = report["versions"]
    print("\nMeasurements" + (" (--quick: tiny sizes, numbers mean nothing)" if args.quick else ""))
    print(common.table(rows, ["workload", "contender", "speed", "quality", "time", "peak RSS", "vs baseline", "other"]))
    print("\nTargets")
    print(common.table(checks, ["workload", "check", "measured", "target", "ok"]))
    print(f"\nversions: python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}, "
          f"trl {v['trl']}, datasets {v['datasets']}, accelerate {v['accelerate']}, ftcli {v['ftcli']}; "
          f"{v['cpu']}, {v['cores']} cores, {v['threads']} torch threads")
    # Other processes on the same cores slow every contender, but not equally: say how busy it was.
    print(f"machine load (1-min average): {report['load_average_start']:.1f} at start, "
          f"{report['load_average_end']:.1f} at end, on {v['cores']} cores"
          + (" — other work shared the CPUs, so figures are noisy" if
             max(report["load_average_start"], report["load_average_end"]) > v["cores"] else ""))
    for name, why in report["skipped"].items():
        print(f"not measured: {name} ({why.splitlines()[0]})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results: {out}")
    return 1 if report["skipped"] and any(w.startswith("failed") for w in report["skipped"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
