"""generate: greedy generation for the same prompts one at a time vs in ftcli's default batches, with
ftcli's own loader and timer (`load_for_generation`, `measure_throughput`: left-padded batches, one
warm-up call each way, tokens counted up to each answer's end token)."""

from __future__ import annotations

import json
from pathlib import Path

import common


def prompts(n: int) -> list[str]:
    rows = json.loads((common.DATA / "alpaca" / "alpaca_5000.json").read_text(encoding="utf-8"))[:n]
    return [r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "") for r in rows]


def measure(n: int, max_new_tokens: int) -> dict:
    from ftcli.generation.load import load_for_generation
    from ftcli.generation.batched import measure_throughput

    # The base model: generation speed does not depend on what a run taught it.
    model, tokenizer, settings, chat, mode = load_for_generation(model=str(common.SMOL), max_new_tokens=max_new_tokens,
                                                                 temperature=0.0)
    return measure_throughput(model, tokenizer, prompts(n), settings, chat, mode=mode)


def run(work: Path, quick: bool, **_) -> dict:
    r = common.worker("generate.py", "measure", {"n": 4 if quick else 32, "max_new_tokens": 8 if quick else 32})
    rows = [{"workload": "generate", "contender": f"ftcli, {name}", "speed": f"{one['tokens_per_s']:.1f} tokens/s",
             "time": f"{one['seconds']:.1f}s", "other": f"{one['tokens']} tokens, {r['prompts']} prompts",
             "vs baseline": f"{one['tokens_per_s'] / r['single']['tokens_per_s']:.2f}× one at a time"}
            for name, one in (("one at a time", r["single"]), (f"batches of {r['batch_size']}", r["batched"]))]
    rows[-1]["quality"] = "same texts" if r["same_texts"] else "texts differ from one-at-a-time"
    return {"rows": rows, "checks": [], "results": r}


if __name__ == "__main__":
    common.worker_main({"measure": measure})
