"""Preference runs scored on held-out pairs: how often, and by how much, the tuned model prefers the
chosen reply, measured as DPO measures it (the implicit reward beta * log(pi / pi_ref), against the
run's reference) and without a reference (the model's own log-probabilities).

Metrics (`ftcli eval --json` keys):
- preference_accuracy: share of pairs where the tuned model's implicit reward for chosen exceeds
  that for rejected. The reward is the method's own: DPO, IPO and KTO's beta * log(pi / pi_ref) (summed
  over the reply); SimPO's beta * the mean log-probability per reply token; ORPO's log-odds of that mean
  (log p / (1 - p)). The last two need no reference, and both order a pair as logprob_preference does;
- reward_margin: the mean of that reward difference;
- logprob_preference: share of pairs where the model's length-normalised log-probability (mean per
  reply token) of chosen exceeds that of rejected; logprob_preference_sum: the same, summed (it partly
  measures length: a shorter reply has fewer tokens to lose probability on).
The base model has no reward against itself, so it gets the two log-probability figures only; under
ORPO and SimPO, whose reward needs no reference, it gets its reward figures too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import UserError
from ftcli.modeling.load import load_model
from ftcli.evaluation.sorted_batches import sorted_forward
from ftcli.recipe import Recipe


@dataclass
class ReplyScores:
    chosen: list[float]  # summed log-probability of each pair's chosen reply
    rejected: list[float]
    chosen_tokens: list[int]
    rejected_tokens: list[int]


def reply_logps(model, examples: list[dict], pad_id: int, batch_size: int, desc: str) -> ReplyScores:
    """Summed log-probabilities of each pair's replies after its prompt (teacher-forced, no dropout)."""
    import torch

    parts = [(e["prompt_ids"], e[side]) for e in examples for side in ("chosen_ids", "rejected_ids")]
    totals = [0.0] * len(parts)
    for chunk, logits in sorted_forward(model, [p + r for p, r in parts], pad_id, batch_size, desc):
        for row, i in enumerate(chunk):
            prompt, reply = parts[i]
            # Position t predicts token t + 1: the reply's tokens are predicted from len(prompt) - 1 on.
            scores = logits[row, len(prompt) - 1:len(prompt) + len(reply) - 1].float().log_softmax(-1)
            totals[i] = scores.gather(-1, torch.tensor(reply, device=logits.device)[:, None]).sum().item()
    return ReplyScores(totals[0::2], totals[1::2], [len(e["chosen_ids"]) for e in examples],
                       [len(e["rejected_ids"]) for e in examples])


def _share(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)


def own_preference(s: ReplyScores) -> dict:
    """The reference-free figures of one model."""
    pairs = list(zip(s.chosen, s.rejected, s.chosen_tokens, s.rejected_tokens))
    return {"logprob_preference": _share(c / max(nc, 1) > r / max(nr, 1) for c, r, nc, nr in pairs),
            "logprob_preference_sum": _share(c > r for c, r, _, _ in pairs)}


def _log_odds(mean_logp: float) -> float:
    """log(p / (1 - p)) of p = exp(mean_logp) < 1, computed without rounding p to 1."""
    return mean_logp - math.log(-math.expm1(min(mean_logp, -1e-12)))


def reward_margins(method: str, beta: float, tuned: ReplyScores, reference: ReplyScores | None) -> list[float]:
    """Each pair's reward for chosen minus that for rejected, as `method` defines the reward."""
    pairs = zip(tuned.chosen, tuned.rejected, tuned.chosen_tokens, tuned.rejected_tokens)
    if method == "simpo":
        return [beta * (c / max(nc, 1) - r / max(nr, 1)) for c, r, nc, nr in pairs]
    if method == "orpo":
        return [_log_odds(c / max(nc, 1)) - _log_odds(r / max(nr, 1)) for c, r, nc, nr in pairs]
    return [beta * ((tc - rc) - (tr - rr))
            for tc, tr, rc, rr in zip(tuned.chosen, tuned.rejected, reference.chosen, reference.rejected)]


def reward_preference(margins: list[float]) -> dict:
    return {"preference_accuracy": _share(m > 0 for m in margins), "reward_margin": sum(margins) / len(margins)}


def _as_pairs(examples: list[dict]) -> list[dict]:
    """Unpaired eval rows (KTO) as pairs: a prompt's desirable completions against its undesirable
    ones, in row order. Pairs are what the preference figures compare."""
    if not examples or "completion_ids" not in examples[0]:
        return examples
    replies: dict[tuple, tuple[list, list]] = {}
    for e in examples:
        replies.setdefault(tuple(e["prompt_ids"]), ([], []))[0 if e["label"] else 1].append(e["completion_ids"])
    pairs = [{"prompt_ids": list(prompt), "chosen_ids": good, "rejected_ids": bad}
             for prompt, (goods, bads) in replies.items() for good, bad in zip(goods, bads)]
    if not pairs:
        raise UserError("the eval rows hold no prompt with both a desirable and an undesirable completion, and the "
                        "preference figures compare the two",
                        hint="set data.eval to pairs (prompt, chosen, rejected), or to unpaired rows where some "
                             "prompts have both labels")
    return pairs


def score_pairs(recipe: Recipe, tuned_source, base_source, tokenizer, rows: list[dict], format: str,
                with_base: bool) -> tuple[dict, dict | None, dict]:
    """(tuned metrics, base metrics or None, details) on the eval pairs. The reference is scored
    whether or not the base is reported: the tuned model's rewards are measured against it."""
    examples = _as_pairs(tokenize_pairs(rows, tokenizer, recipe, format, "eval data").examples)
    if not examples:
        raise UserError("no eval pairs left after tokenization (prompts longer than data.max_length)")
    p, size = recipe.preference, recipe.eval.batch_size

    def scores(source, desc):
        model = load_model(recipe.task, source, None, tokenizer.pad_token_id, tokenizer, recipe.train.seed).eval()
        try:
            return reply_logps(model, examples, tokenizer.pad_token_id, size, desc)
        finally:
            del model

    tuned = scores(tuned_source, "tuned")
    reference = None  # orpo, simpo: rewards without one
    if p.reference == "auto":
        reference = scores(base_source, "base")
    elif p.has_reference:
        reference = scores(recipe.model.model_copy(update={"name_or_path": p.reference, "quantization": None}),
                           "reference")
    tuned_metrics = {**reward_preference(reward_margins(p.method, p.beta, tuned, reference)), **own_preference(tuned)}
    base_metrics = own_preference(reference) if with_base and p.reference == "auto" else None
    if with_base and base_metrics is None:
        base_scores = scores(base_source, "base")
        base_metrics = own_preference(base_scores)
        if not p.has_reference:  # orpo, simpo: the base has a reward of its own, the tuned model's kind
            base_metrics.update(reward_preference(reward_margins(p.method, p.beta, base_scores, None)))

    def asked(metrics: dict) -> dict:
        return {k: v for k, v in metrics.items() if k in recipe.eval.metrics}

    return asked(tuned_metrics), (asked(base_metrics) if base_metrics is not None else None), \
        {"pairs": len(examples)}
