"""Preference runs scored on held-out pairs: how often, and by how much, the tuned model prefers the
chosen reply, measured as DPO measures it (the implicit reward beta * log(pi / pi_ref), against the
run's reference) and without a reference (the model's own log-probabilities).

Metrics (`ftcli eval --json` keys):
- preference_accuracy: share of pairs where the tuned model's implicit reward for chosen exceeds
  that for rejected;
- reward_margin: the mean of that reward difference;
- logprob_preference: share of pairs where the model's length-normalised log-probability (mean per
  reply token) of chosen exceeds that of rejected; logprob_preference_sum: the same, summed (it partly
  measures length: a shorter reply has fewer tokens to lose probability on).
The base model has no reward against itself, so it gets the two log-probability figures only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import UserError
from ftcli.modeling.load import load_model
from ftcli.progress import Progress
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

    sequences = [(e["prompt_ids"], e[side]) for e in examples for side in ("chosen_ids", "rejected_ids")]
    totals = [0.0] * len(sequences)
    # Length-sorted batches: little padding; the order does not change a sequence's score.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
    device = next(model.parameters()).device
    with torch.inference_mode(), Progress(f"{desc}: batch", -(-len(order) // batch_size)) as progress:
        for done, start in enumerate(range(0, len(order), batch_size), 1):
            chunk = order[start:start + batch_size]
            width = max(len(sequences[i][0]) + len(sequences[i][1]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(chunk):
                tokens = sequences[i][0] + sequences[i][1]
                ids[row, :len(tokens)] = torch.tensor(tokens)
                mask[row, :len(tokens)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, i in enumerate(chunk):
                prompt, reply = sequences[i]
                # Position t predicts token t + 1: the reply's tokens are predicted from len(prompt) - 1 on.
                scores = logits[row, len(prompt) - 1:len(prompt) + len(reply) - 1].float().log_softmax(-1)
                totals[i] = scores.gather(-1, torch.tensor(reply, device=device)[:, None]).sum().item()
            progress.update(done)
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


def reward_preference(tuned: ReplyScores, reference: ReplyScores, beta: float) -> dict:
    margins = [beta * ((tc - rc) - (tr - rr))
               for tc, tr, rc, rr in zip(tuned.chosen, tuned.rejected, reference.chosen, reference.rejected)]
    return {"preference_accuracy": _share(m > 0 for m in margins), "reward_margin": sum(margins) / len(margins)}


def score_pairs(recipe: Recipe, tuned_source, base_source, tokenizer, rows: list[dict], format: str,
                with_base: bool) -> tuple[dict, dict | None, dict]:
    """(tuned metrics, base metrics or None, details) on the eval pairs. The reference is scored
    whether or not the base is reported: the tuned model's rewards are measured against it."""
    examples = tokenize_pairs(rows, tokenizer, recipe, format, "eval data").examples
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
    reference_source = base_source if p.reference == "auto" else \
        recipe.model.model_copy(update={"name_or_path": p.reference, "quantization": None})
    reference = scores(reference_source, "reference" if p.reference != "auto" else "base")
    tuned_metrics = {**reward_preference(tuned, reference, p.beta), **own_preference(tuned)}
    base_metrics = own_preference(reference) if with_base and p.reference == "auto" else None
    if with_base and base_metrics is None:
        base_metrics = own_preference(scores(base_source, "base"))

    def asked(metrics: dict) -> dict:
        return {k: v for k, v in metrics.items() if k in recipe.eval.metrics}

    return asked(tuned_metrics), (asked(base_metrics) if base_metrics is not None else None), \
        {"pairs": len(examples)}
