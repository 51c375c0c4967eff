"""The report's numbers: curves out of Trainer's log history, and a compact length histogram that
training records in train_results.json (the examples themselves are not kept with the run)."""

from __future__ import annotations

import math


def length_histogram(lengths: list[int], bins: int = 20) -> dict | None:
    """{"edges": [...], "counts": [...], "min", "max", "mean", "n"}: `bins` equal-width bins over the
    tokenized training examples' lengths; None without examples."""
    if not lengths:
        return None
    low, high = min(lengths), max(lengths)
    width = max(1, math.ceil((high - low + 1) / bins))
    counts = [0] * math.ceil((high - low + 1) / width)
    for value in lengths:
        counts[(value - low) // width] += 1
    return {"edges": [low + i * width for i in range(len(counts) + 1)], "counts": counts, "n": len(lengths),
            "min": low, "max": high, "mean": round(sum(lengths) / len(lengths), 2)}


def _series(history: list[dict], key: str) -> list[tuple[float, float]]:
    return [(e["step"], e[key]) for e in history
            if "step" in e and isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]


def train_loss(history: list[dict]) -> list[tuple[float, float]]:
    return _series(history, "loss")


def eval_loss(history: list[dict]) -> list[tuple[float, float]]:
    return _series(history, "eval_loss")


# What TRL's preference trainers (DPO, KTO, ...) log at each step and evaluation, beside the loss: the
# implicit reward's margin between chosen and rejected replies, and how often chosen wins.
PREFERENCE_CURVES = ("rewards/margins", "rewards/accuracies")


def logged(history: list[dict], key: str) -> tuple[list, list]:
    """A quantity's training points and its evaluation points (Trainer logs the latter as eval_<key>)."""
    return _series(history, key), _series(history, f"eval_{key}")


def learning_rate(history: list[dict]) -> list[tuple[float, float]]:
    return _series(history, "learning_rate")


def throughput(history: list[dict]) -> list[tuple[float, float]]:
    """Tokens/s between consecutive training logs: Trainer logs the tokens seen so far
    (num_input_tokens_seen, non-padding) and the seconds since training started (train_runtime) with each
    loss; an interval holding an evaluation or a checkpoint save reads slower than training ran."""
    points, last = [], None
    for e in history:
        if "loss" not in e or not isinstance(e.get("num_input_tokens_seen"), (int, float)) \
                or not isinstance(e.get("train_runtime"), (int, float)):
            continue
        now = (e["step"], e["num_input_tokens_seen"], e["train_runtime"])
        start = last or (0, 0, 0.0)
        if now[2] > start[2] and now[1] > start[1]:
            points.append((now[0], (now[1] - start[1]) / (now[2] - start[2])))
        last = now
    return points


def final_eval(history: list[dict]) -> dict:
    """The last evaluation during training: {eval_loss: ..., eval_accuracy: ...} (runtime keys left out)."""
    evals = [e for e in history if "eval_loss" in e]
    if not evals:
        return {}
    skip = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    return {k: v for k, v in evals[-1].items() if k.startswith("eval_") and k not in skip}
