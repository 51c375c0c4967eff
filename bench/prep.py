"""prep: data preparation of a first run (empty tokenized-data cache) vs a second run of the same
recipe (cache hit). Each run is its own process, as two `ftcli finetune` runs would be; the timed part
is what finetune does before loading the model: `load_splits_cached` + `prepare_splits` (reading and
cleaning the rows or loading them from the rows cache, the cache keys, tokenizing or loading the
cached arrays). The tokenizer loads before the clock starts."""

from __future__ import annotations

import time
from pathlib import Path

import cls
import common
import sft


def prepare(recipe: dict) -> dict:
    from ftcli.modeling.load import load_tokenizer
    from ftcli.data.prepare import prepare_splits
    from ftcli.data.tokenize import label_mapping
    from ftcli.recipe import parse_recipe
    from ftcli.data.rows_cache import load_splits_cached

    parsed = parse_recipe(recipe)
    tokenizer = load_tokenizer(parsed.model)
    messages: list[str] = []
    t0 = time.perf_counter()
    splits = load_splits_cached(parsed, messages.append)
    label2id = label_mapping(splits.train, parsed.data.label_field) if splits.mode == "classification" else None
    train_set, eval_set = prepare_splits(parsed, splits, tokenizer, label2id, messages.append)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "train_examples": len(train_set.examples), "eval_examples": len(eval_set.examples),
            "cache_hits": sum("from the cache" in m for m in messages)}


def run(work: Path, quick: bool, **_) -> dict:
    size = sft.sizes(quick)
    recipes = {"sft": sft.recipe(sft.write_data(work, size["rows"]), str(work / "prep-sft"), size["steps"],
                                 size["max_length"]),
               "cls": cls.recipe(**cls.write_data(work, quick), out=str(work / "prep-cls"))}
    results, rows, checks = {}, [], []
    for name, recipe in recipes.items():
        env = {"FTCLI_CACHE_DIR": str(work / f"cache-prep-{name}")}  # empty before the first run
        first = common.worker("prep.py", "prepare", {"recipe": recipe}, env)
        second = common.worker("prep.py", "prepare", {"recipe": recipe}, env)
        results[name] = {"first": first, "second": second}
        share = second["seconds"] / first["seconds"]
        rows += [{"workload": "prep", "contender": f"{name} data, {run}", "time": f"{r['seconds']:.3f}s",
                  "other": f"{r['train_examples']} train + {r['eval_examples']} eval examples; "
                           f"{r['cache_hits']} split(s) from cache"}
                 for run, r in (("first run", first), ("second run", second))]
        rows[-1]["vs baseline"] = f"{share:.3f}× first run"
        checks.append(common.check("prep", f"{name}: second run's prep time vs first", share, 0.10,
                                   higher_is_better=False))
    return {"rows": rows, "checks": checks, "results": results}


if __name__ == "__main__":
    common.worker_main({"prepare": prepare})
