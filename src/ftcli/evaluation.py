"""`ftcli eval`: the same eval data through the base and the tuned model, metrics side by side."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ftcli import runs
from ftcli.data import describe_source, load_splits, source_fingerprint
from ftcli.errors import UserError
from ftcli.recipe import GENERATION_METRICS, Recipe
from ftcli.progress import log


def _batches(examples: list[dict], batch_size: int):
    # Length-sorted batches waste almost nothing on padding; order does not change the metrics.
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start:start + batch_size]


def _progress(iterable, total: int, desc: str):
    from tqdm.auto import tqdm

    # On stderr and gone when done: stdout stays clean for --json.
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, disable=None)


def _score_classification(model, examples, collate, batch_size, metric_names, labels, desc) -> tuple[dict, dict]:
    import torch

    from ftcli.metrics import compute_classification_metrics
    from ftcli.reports import confusion, per_class_report

    predictions, references = [], []
    with torch.inference_mode():
        for chunk in _progress(_batches(examples, batch_size), math.ceil(len(examples) / batch_size), desc):
            batch = collate(chunk)
            references += batch.pop("labels").tolist()
            predictions += model(**batch).logits.argmax(-1).tolist()
    metrics = compute_classification_metrics(metric_names, predictions, references, len(labels))
    details = {"per_class": per_class_report(references, predictions, labels),
               "confusion_matrix": confusion(references, predictions, len(labels)), "labels": labels}
    return metrics, details


def _score_loss(model, examples, collate, batch_size, metric_names, desc, shift: bool = True) -> dict:
    import torch
    import torch.nn.functional as F

    from ftcli.preprocess import IGNORE_INDEX

    total_loss, total_tokens = 0.0, 0
    with torch.inference_mode():
        for chunk in _progress(_batches(examples, batch_size), math.ceil(len(examples) / batch_size), desc):
            batch = collate(chunk)
            labels = batch.pop("labels")
            if model.config.is_encoder_decoder:
                # The model feeds its decoder the labels shifted right, so its logits line up with
                # the labels themselves: the very loss training minimised, summed over tokens here.
                logits, targets = model(**batch, labels=labels).logits.float(), labels
            elif not shift:  # masked-lm: each position predicts its own (hidden) token
                logits, targets = model(**batch).logits.float(), labels
            else:
                logits, targets = model(**batch).logits[:, :-1].float(), labels[:, 1:]
            total_loss += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                          ignore_index=IGNORE_INDEX, reduction="sum").item()
            total_tokens += int((targets != IGNORE_INDEX).sum())
    loss = total_loss / max(total_tokens, 1)
    values = {"loss": loss, "perplexity": math.exp(min(loss, 700))}
    return {name: values[name] for name in metric_names}


def _score_generation(model, tokenizer, recipe: Recipe, rows: list[dict], metric_names,
                      format: str = "prompt_response") -> tuple[dict, dict]:
    """Generate a response for every eval row (greedy) from exactly the prompt training put before
    its reply (a chat's last assistant turn), and score it against that reply."""
    from ftcli.generation import generate_texts
    from ftcli.metrics import compute_text_metrics
    from ftcli.templates import prompt_and_reference

    seq2seq = format == "seq2seq"
    pairs = [_source_and_target(r, recipe) if seq2seq else prompt_and_reference(r, recipe, format, tokenizer)
             for r in rows]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    # The prompts are already rendered in the training format, system prompt included: generation
    # takes them as they are, with no template, system prompt or few-shot examples added.
    verbatim = recipe.generate.model_copy(update={"temperature": 0.0, "num_return_sequences": 1, "template": None,
                                                  "system_prompt": None, "few_shot": None})
    generated = generate_texts(model, tokenizer, prompts, verbatim, chat=False,
                               batch_size=recipe.generate.batch_size, mode="seq2seq" if seq2seq else "text")
    samples = [{"prompt": p, "reference": r, "generated": g}
               for p, r, g in list(zip(prompts, references, generated))[:5]]
    return compute_text_metrics(metric_names, generated, references), {"samples": samples}


def _source_and_target(row: dict, recipe: Recipe) -> tuple[str, str]:
    """seq2seq: the encoder's text as training wrote it (source prefix and source), and the target."""
    d = recipe.data
    return d.source_prefix + str(row[d.prompt_field]), str(row[d.response_field])


def _split_metrics(recipe: Recipe, mode: str) -> tuple[list[str], list[str]]:
    """(metrics computed from the loss or logits, metrics computed on generated text)."""
    names = recipe.eval.metrics
    generated = [n for n in names if n in GENERATION_METRICS]
    if mode == "sft" and recipe.eval.generate and not generated:
        generated = ["exact_match", "rouge"]
    if mode not in ("sft", "seq2seq") and generated:
        raise UserError(f"eval.metrics {', '.join(generated)} score generated responses; they need SFT data "
                        f"(prompt and response fields), not plain text")
    return [n for n in names if n not in GENERATION_METRICS], generated


def score_model(recipe: Recipe, mode: str, source, tokenizer, rows, label2id: dict | None,
                desc: str = "eval", format: str | None = None) -> tuple[dict, dict]:
    """Metrics (and details) for one model on the eval rows, tokenized exactly as in training
    (`format`: the SFT row format, `Splits.format`)."""
    from transformers import set_seed

    from ftcli.modeling import load_model
    from ftcli.preprocess import tokenize
    from ftcli.train import data_collator

    examples = tokenize(mode, rows, tokenizer, recipe, label2id, "eval data", format=format).examples
    if not examples:
        raise UserError("no eval examples left after tokenization (responses cut away by max_length)")
    set_seed(recipe.train.seed)  # a base classifier's fresh head is the same one training started from
    # A from_config base is rebuilt from the run's tokenizer and seed: the weights training started from.
    model = load_model(recipe.task, source, label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed).eval()
    collate = data_collator(recipe, tokenizer)  # a fresh masking collator: base and tuned see the same masks
    size = recipe.eval.batch_size
    if mode == "classification":
        return _score_classification(model, examples, collate, size, recipe.eval.metrics, list(label2id), desc)
    from_loss, from_text = _split_metrics(recipe, mode)
    metrics, details = _score_loss(model, examples, collate, size, from_loss, desc,
                                   shift=recipe.task != "masked-lm"), {}
    if from_text:
        generated_metrics, details = _score_generation(model, tokenizer, recipe, rows, from_text,
                                                       format or "prompt_response")
        metrics.update(generated_metrics)
    return metrics, details


def _untrained(recipe: Recipe) -> str:
    return f"untrained {recipe.model.from_config['architecture']} from model.from_config (seed {recipe.train.seed})"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("ftcli", "transformers", "evaluate", "scikit-learn", "sacrebleu", "rouge-score"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def evaluate_run(target: str | Path | None = None, base: bool = True, limit: int | None = None) -> dict:
    """Evaluate a run's tuned model (and its base model) on the run's eval data; save and return
    `{"run", "tuned", "base", ...}` (with per-class details and a confusion matrix for classifiers)."""
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

        config = AutoConfig.from_pretrained(tuned.name_or_path)
        label2id = {str(label): int(i) for label, i in sorted(config.label2id.items(), key=lambda kv: kv[1])}

    log(f"evaluating {run_dir.name} on {len(rows)} eval examples")
    results: dict = {"run": str(run_dir)}
    results["tuned"], tuned_details = score_model(recipe, splits.mode, tuned, tokenizer, rows, label2id, "tuned",
                                                  format=splits.format)
    if base:
        results["base"], base_details = score_model(recipe, splits.mode, recipe.model, tokenizer, rows, label2id,
                                                    "base", format=splits.format)
    results.update(task=recipe.task, mode=splits.mode, examples=len(rows),
                   eval_data=describe_source(recipe.data.eval) if recipe.data.eval
                   else f"{describe_source(recipe.data.train)} (held-out {recipe.data.eval_fraction:g})",
                   eval_data_sha256=source_fingerprint(recipe.data.eval or recipe.data.train),
                   base_model=recipe.model.name_or_path or _untrained(recipe), versions=_versions(), tuned_details=tuned_details)
    if base:
        results["base_details"] = base_details
    if "confusion_matrix" in tuned_details:
        from ftcli.reports import confusion_png

        png = confusion_png(tuned_details["confusion_matrix"], tuned_details["labels"],
                            run_dir / "confusion_matrix.png", f"{run_dir.name} (tuned)")
        results["confusion_matrix_png"] = str(png)
    runs.write_json(run_dir / runs.EVAL_RESULTS, results)
    from ftcli.model_card import refresh_run_cards

    refresh_run_cards(run_dir, log)  # the model card's metrics now include these results
    return results


def compare_runs(targets: list[str]) -> list[dict]:
    """Each run's saved eval results (evaluating, without the base model, runs that have none)."""
    found = []
    for target in targets:
        run_dir = runs.resolve_run(target)
        saved = run_dir / runs.EVAL_RESULTS
        found.append(runs.read_json(saved) if saved.is_file() else evaluate_run(run_dir, base=False))
    return found
