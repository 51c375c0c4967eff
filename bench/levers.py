"""The sft workload's ftcli run under variants of its recipe, one fresh process each, to measure what
each speed/memory lever is worth (the closing notes and README quote these).

    .venv/bin/python bench/levers.py [--quick] [--only NAME,...]

Variants turn levers off from ftcli's defaults, or optional ones on. Each prints non-padding tokens/s,
final loss, peak RSS and padded tokens. Run it on a quiet machine: it takes ~3 minutes per variant.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
import sft

VARIANTS = {  # name: recipe overrides from ftcli's defaults
    "random-order": {"train.group_by_length": False, "train.micro_batch_tokens": None},
    "grouped": {"train.micro_batch_tokens": None},
    "defaults": {},  # grouped, passes of at most 512 tokens
    "passes-1024": {"train.micro_batch_tokens": 1024},
    "passes-2048": {"train.micro_batch_tokens": 2048},
    "packing": {"data.packing": True},
    "workers-1": {"train.dataloader_num_workers": 1},
    "compile": {"train.torch_compile": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated variant names (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(VARIANTS)
    size = sft.sizes(args.quick)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftcli-levers-") as tmp:
        work = Path(tmp)
        data = sft.write_data(work, size["rows"])
        for i, name in enumerate(names):
            r = common.worker("sft.py", "ftcli", {"data": data, "out": str(work / f"run{i}"), "steps": size["steps"],
                                                 "max_length": size["max_length"], "overrides": VARIANTS[name]},
                              {"FTCLI_CACHE_DIR": str(work / "cache")})
            rows.append({"variant": name, "tokens/s": f"{r['tokens'] / r['train_s']:.1f}",
                         "final loss": f"{r['final_loss']:.4f}", "peak RSS": f"{r['peak_rss_mb']:.0f} MB",
                         "train": f"{r['train_s']:.1f}s", "padded tokens": str(r["padded_tokens"]),
                         "load after": f"{r['load_average_after']:.1f}"})
            print(common.table(rows[-1:], list(rows[-1])), flush=True)
    print()
    print(common.table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
