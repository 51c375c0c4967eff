"""One model scored on a run's eval rows, tokenized exactly as in training: classification metrics
from its predictions, loss and perplexity from its token losses, and text metrics from responses it
generates."""

from __future__ import annotations

import math

from ftcli.data.collators import PadCollator, data_collator
from ftcli.data.generation_prompts import prompt_and_reference
from ftcli.data.tokenize import IGNORE_INDEX, tokenize
from ftcli.errors import UserError
from ftcli.evaluation.metrics import compute_classification_metrics, compute_text_metrics
from ftcli.evaluation.reports import confusion, per_class_report
from ftcli.generation.batched import generate_texts
from ftcli.modeling.load import load_model
from ftcli.progress import Progress
from ftcli.recipe import GENERATION_METRICS, Recipe


def _batches(examples: list[dict], batch_size: int):
    # Length-sorted batches waste almost nothing on padding; order does not change the metrics.
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start:start + batch_size]


def _progress(iterable, total: int, desc: str):
    # On stderr (a bar gone when done, or a line now and then): stdout stays clean for --json.
    with Progress(f"{desc}: batch", total) as progress:
        for done, item in enumerate(iterable, 1):
            yield item
            progress.update(done)


def _score_classification(model, examples, collate, batch_size, metric_names, labels, desc) -> tuple[dict, dict]:
    import torch
    import torch.nn.functional as F

    predictions, references, total_loss = [], [], 0.0
    with torch.inference_mode():
        for chunk in _progress(_batches(examples, batch_size), math.ceil(len(examples) / batch_size), desc):
            batch = collate(chunk)
            targets = batch.pop("labels")
            logits = model(**batch).logits.float()
            references += targets.tolist()
            predictions += logits.argmax(-1).tolist()
            total_loss += F.cross_entropy(logits, targets.to(logits.device), reduction="sum").item()
    metrics = compute_classification_metrics([n for n in metric_names if n != "loss"], predictions, references,
                                             len(labels))
    if "loss" in metric_names:  # the cross-entropy training minimised, averaged over the eval rows
        metrics["loss"] = total_loss / max(len(references), 1)
    details = {"per_class": per_class_report(references, predictions, labels),
               "confusion_matrix": confusion(references, predictions, len(labels)), "labels": labels}
    return metrics, details


def _score_loss(model, examples, collate, batch_size, metric_names, desc, shift: bool = True) -> dict:
    import torch
    import torch.nn.functional as F


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


    # split="eval": masked-lm examples carry the masks training evaluated on (seeded per example).
    examples = tokenize(mode, rows, tokenizer, recipe, label2id, "eval data", format=format,
                        split="eval").examples
    if not examples:
        raise UserError("no eval examples left after tokenization (responses cut away by max_length)")
    set_seed(recipe.train.seed)  # a base classifier's fresh head is the same one training started from
    # A from_config base is rebuilt from the run's tokenizer and seed: the weights training started from.
    model = load_model(recipe.task, source, label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed).eval()
    # Padded, never packed: the same loss as packed batches (tests/test_architectures.py), and safe for any
    # model, which a packed batch is only for the architectures finetune accepts packing on.
    collate = PadCollator(tokenizer.pad_token_id) if recipe.data.packing else data_collator(recipe, tokenizer)
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
