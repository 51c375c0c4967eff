"""cls: MiniLM-L6 sequence classification on SST-2 — the guide's script, the best hand script, ftcli.

Every contender trains on the same rows (the first N of train.tsv, in file order) with the same seed,
epochs, batch size and learning rate (ftcli's default, given to the scripts too, so accuracy compares
pipelines rather than hyperparameters), and is scored on all validation sentences. Speed is training
examples / the Trainer's train_runtime (model loading, tokenization and evaluation left out).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import common

BATCH, EPOCHS, SCRIPT_MAX_LENGTH = 32, 1, 128


def read_sst2(path: Path, limit: int | None = None) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{"text": r["sentence"], "label": int(r["label"])}
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return rows[:limit]


def write_data(work: Path, quick: bool) -> dict:
    n_train, n_eval = (64, 64) if quick else (3000, None)
    files = {"train": work / "sst2-train.jsonl", "eval": work / "sst2-eval.jsonl"}
    for split, n, name in (("train", n_train, "train.tsv"), ("eval", n_eval, "validation.tsv")):
        with open(files[split], "w", encoding="utf-8") as f:
            for row in read_sst2(common.DATA / "sst2" / name, n):
                f.write(json.dumps(row) + "\n")
    return {k: str(v) for k, v in files.items()}


def recipe(train: str, eval: str, out: str) -> dict:
    """ftcli's recipe: only what the workload fixes; everything else is ftcli's default."""
    return {"task": "sequence-classification", "model": {"name_or_path": str(common.MINILM)},
            "data": {"train": train, "eval": eval}, "train": {"output_dir": out, "epochs": EPOCHS, "batch_size": BATCH}}


# --- the contenders (each in its own process) -----------------------------------------------------

def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _script(train: str, eval: str, out: str, dynamic: bool) -> dict:
    """The guide's script (dynamic=False: every example padded to 128) or the best hand script
    (dynamic=True: padded per batch, batches of similar lengths)."""
    import numpy as np
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from ftcli.recipe import TrainSection

    tokenizer = AutoTokenizer.from_pretrained(common.MINILM)

    def encode(batch):
        return tokenizer(batch["text"], padding=False if dynamic else "max_length", truncation=True,
                         max_length=SCRIPT_MAX_LENGTH)

    train_set = Dataset.from_list(_rows(train)).map(encode, batched=True)
    eval_set = Dataset.from_list(_rows(eval)).map(encode, batched=True)

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    seen = common.instrument(Trainer)
    set_seed(common.SEED)  # the new classification head starts the same in every contender
    model = AutoModelForSequenceClassification.from_pretrained(common.MINILM, num_labels=2)
    args = TrainingArguments(output_dir=out, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
                             per_device_eval_batch_size=BATCH, learning_rate=TrainSection().learning_rate,
                             seed=common.SEED, report_to="none",
                             train_sampling_strategy="group_by_length" if dynamic else "random")
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)
    metrics = trainer.train().metrics
    scores = trainer.evaluate()
    return {"train_s": metrics["train_runtime"], "examples": len(train_set) * EPOCHS,
            "train_loss": metrics["train_loss"], "accuracy": scores["eval_accuracy"],
            "eval_examples": len(eval_set), **_padding(seen)}


def _padding(seen: dict) -> dict:
    return {"tokens": seen["tokens"], "padded_tokens": seen["padded_tokens"]}


def guide(train: str, eval: str, out: str) -> dict:
    return _script(train, eval, out, dynamic=False)


def hand(train: str, eval: str, out: str) -> dict:
    return _script(train, eval, out, dynamic=True)


def ftcli_run(train: str, eval: str, out: str) -> dict:
    import ftcli
    from ftcli.training.trainer import FtcliTrainer
    from ftcli.recipe import parse_recipe

    seen = common.instrument(FtcliTrainer)
    run_dir = ftcli.finetune(parse_recipe(recipe(train, eval, out)))
    metrics = json.loads((run_dir / "train_results.json").read_text())
    scores = ftcli.evaluate(run_dir, base=False)  # ftcli's own eval: what a user would read
    return {"train_s": metrics["train_runtime"], "examples": metrics["train_samples"] * EPOCHS,
            "train_loss": metrics["train_loss"], "accuracy": scores["tuned"]["accuracy"],
            "eval_examples": scores["examples"], **_padding(seen)}


# --- the workload (in the bench process) ----------------------------------------------------------

def _share(r: dict) -> str:
    return f"{100 * (1 - r['tokens'] / r['padded_tokens']):.0f}"


def run(work: Path, quick: bool, **_) -> dict:
    files = write_data(work, quick)
    env = {"FTCLI_CACHE_DIR": str(work / "cache-cls")}  # a first run: nothing tokenized yet
    results = {}
    for name, role in (("guide", "guide"), ("hand", "hand"), ("ftcli", "ftcli")):
        results[name] = common.worker("cls.py", role, {**files, "out": str(work / f"cls-{name}")}, env)
        results[name]["examples_per_s"] = results[name]["examples"] / results[name]["train_s"]

    speed = {k: v["examples_per_s"] for k, v in results.items()}
    rows = [{"workload": "cls", "contender": name, "speed": f"{r['examples_per_s']:.1f} examples/s",
             "quality": f"accuracy {r['accuracy']:.4f}", "time": f"train {r['train_s']:.1f}s",
             "peak RSS": f"{r['peak_rss_mb']:.0f} MB",
             "vs baseline": f"{speed[name] / speed['guide']:.2f}× guide, {speed[name] / speed['hand']:.2f}× hand",
             "other": f"{r['tokens']} tokens in {r['padded_tokens']} padded ({_share(r)}% padding)"}
            for name, r in results.items()]
    gap = abs(results["ftcli"]["accuracy"] - results["hand"]["accuracy"])
    checks = [common.check("cls", "ftcli examples/s vs hand script", speed["ftcli"] / speed["hand"], 1.0),
              common.check("cls", "ftcli examples/s vs guide's script", speed["ftcli"] / speed["guide"], 7.0),
              common.check("cls", "ftcli accuracy − hand script's (abs)", gap, 0.01, higher_is_better=False,
                           unit="", ratio=False)]
    return {"rows": rows, "checks": checks, "results": results}


if __name__ == "__main__":
    common.worker_main({"guide": guide, "hand": hand, "ftcli": ftcli_run})
