"""Reward models scored on held-out pairs: the share of pairs whose chosen reply the model scores
above the rejected one (`pairwise_accuracy`), and the mean difference of the two scores
(`reward_margin`). The base model is the same body with a fresh one-output head (seeded by
train.seed), so its figures are the chance level a trained head must beat."""

from __future__ import annotations

from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import UserError
from ftcli.modeling.load import load_model
from ftcli.evaluation.sorted_batches import sorted_forward
from ftcli.recipe import Recipe


def sequence_rewards(model, sequences: list[list[int]], pad_id: int, batch_size: int, desc: str) -> list[float]:
    """The model's scalar score of each token sequence (no dropout)."""
    scores = [0.0] * len(sequences)
    for chunk, logits in sorted_forward(model, sequences, pad_id, batch_size, desc):
        for row, i in enumerate(chunk):
            scores[i] = logits[row, 0].float().item()
    return scores


def pairwise(chosen: list[float], rejected: list[float]) -> dict:
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"pairwise_accuracy": sum(m > 0 for m in margins) / len(margins),
            "reward_margin": sum(margins) / len(margins)}


def score_reward_model(recipe: Recipe, tuned_source, base_source, tokenizer, rows: list[dict], format: str,
                       with_base: bool) -> tuple[dict, dict | None, dict]:
    """(tuned metrics, base metrics or None, details) on the eval pairs."""
    from transformers import set_seed

    examples = tokenize_pairs(rows, tokenizer, recipe, format, "eval data").examples
    if not examples:
        raise UserError("no eval pairs left after tokenization (prompts longer than data.max_length)")
    sequences = [e["prompt_ids"] + e[side] for e in examples for side in ("chosen_ids", "rejected_ids")]

    def metrics(source, desc):
        set_seed(recipe.train.seed)  # the base's fresh head: the same one every eval
        model = load_model(recipe.task, source, None, tokenizer.pad_token_id, tokenizer, recipe.train.seed).eval()
        try:
            scores = sequence_rewards(model, sequences, tokenizer.pad_token_id, recipe.eval.batch_size, desc)
        finally:
            del model
        found = pairwise(scores[0::2], scores[1::2])
        return {k: v for k, v in found.items() if k in recipe.eval.metrics}

    tuned = metrics(tuned_source, "tuned")
    return tuned, (metrics(base_source, "base") if with_base else None), {"pairs": len(examples)}
