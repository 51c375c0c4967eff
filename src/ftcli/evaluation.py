"""`ftcli eval`: the same eval data through the base and the tuned model, metrics side by side."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ftcli import runs
from ftcli.data import load_splits
from ftcli.errors import UserError
from ftcli.recipe import Recipe
from ftcli.train import log


def _batches(examples: list[dict], batch_size: int):
    # Length-sorted batches waste almost nothing on padding; order does not change the metrics.
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start:start + batch_size]


def _score_classification(model, examples, collate, batch_size, metric_names, num_labels) -> dict:
    import torch

    from ftcli.metrics import compute_classification_metrics

    predictions, references = [], []
    with torch.inference_mode():
        for chunk in _batches(examples, batch_size):
            batch = collate(chunk)
            labels = batch.pop("labels")
            logits = model(**batch).logits
            predictions += logits.argmax(-1).tolist()
            references += labels.tolist()
    return compute_classification_metrics(metric_names, predictions, references, num_labels)


def _score_causal_lm(model, examples, collate, batch_size, metric_names) -> dict:
    import torch
    import torch.nn.functional as F

    from ftcli.preprocess import IGNORE_INDEX

    total_loss, total_tokens = 0.0, 0
    with torch.inference_mode():
        for chunk in _batches(examples, batch_size):
            batch = collate(chunk)
            labels = batch.pop("labels")
            logits = model(**batch).logits[:, :-1].float()
            targets = labels[:, 1:]
            total_loss += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                          ignore_index=IGNORE_INDEX, reduction="sum").item()
            total_tokens += int((targets != IGNORE_INDEX).sum())
    loss = total_loss / max(total_tokens, 1)
    values = {"loss": loss, "perplexity": math.exp(min(loss, 700))}
    return {name: values[name] for name in metric_names}


def _file_hash(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def score_model(recipe: Recipe, mode: str, source, tokenizer, rows, label2id: dict | None) -> dict:
    """Metrics for one model on the eval rows, tokenized exactly as in training."""
    from transformers import set_seed

    from ftcli.modeling import load_model
    from ftcli.preprocess import PadCollator, tokenize

    examples = tokenize(mode, rows, tokenizer, recipe, label2id, "eval data").examples
    if not examples:
        raise UserError("no eval examples left after tokenization (responses cut away by max_length)")
    set_seed(recipe.train.seed)  # a base classifier's fresh head is the same one training started from
    model = load_model(recipe.task, source, label2id, tokenizer.pad_token_id).eval()
    collate = PadCollator(tokenizer.pad_token_id)
    size = recipe.eval.batch_size
    if mode == "classification":
        return _score_classification(model, examples, collate, size, recipe.eval.metrics, len(label2id))
    return _score_causal_lm(model, examples, collate, size, recipe.eval.metrics)


def evaluate_run(target: str | Path | None = None, base: bool = True, limit: int | None = None) -> dict:
    """Evaluate a run's tuned model (and its base model) on the run's eval data; save and return
    `{"run", "tuned", "base", ...}`."""
    from ftcli.modeling import load_tokenizer, local_model

    run_dir = runs.resolve_run(target)
    recipe = runs.load_run_recipe(run_dir)
    splits = load_splits(recipe)
    rows = splits.eval[:limit] if limit else splits.eval
    if not rows:
        raise UserError(f"{run_dir}: the recipe has no eval data",
                        hint="set data.eval, or data.eval_fraction above 0, and train again")
    tuned = local_model(run_dir / runs.MODEL_DIR)
    tokenizer = load_tokenizer(tuned)
    label2id = None
    if splits.mode == "classification":
        from transformers import AutoConfig

        label2id = {str(k): int(v) for k, v in AutoConfig.from_pretrained(tuned.name_or_path).label2id.items()}

    log(f"evaluating {run_dir.name} on {len(rows)} eval examples")
    results: dict = {"run": str(run_dir)}
    results["tuned"] = score_model(recipe, splits.mode, tuned, tokenizer, rows, label2id)
    if base:
        results["base"] = score_model(recipe, splits.mode, recipe.model, tokenizer, rows, label2id)
    results.update(task=recipe.task, mode=splits.mode, examples=len(rows),
                   eval_data=recipe.data.eval or f"{recipe.data.train} (held-out {recipe.data.eval_fraction:g})",
                   eval_data_sha256=_file_hash(recipe.data.eval or recipe.data.train),
                   base_model=recipe.model.name_or_path)
    runs.write_json(run_dir / runs.EVAL_RESULTS, results)
    return results


def format_table(results: dict) -> str:
    """Metrics as a text table: base, tuned and the change, one metric a row."""
    tuned, base = results["tuned"], results.get("base")
    header = ["metric"] + (["base", "tuned", "change"] if base else ["tuned"])
    rows = []
    for name, value in tuned.items():
        row = [name]
        if base:
            row += [f"{base[name]:.4f}", f"{value:.4f}", f"{value - base[name]:+.4f}"]
        else:
            row.append(f"{value:.4f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = f"{results['run']}  ({results.get('examples', '?')} eval examples)"
    return "\n".join([title] + lines)
