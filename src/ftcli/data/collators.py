"""Batches for the Trainer: padded (dynamic, right side), packed end to end (causal-lm), or with
tokens hidden for a masked LM to recover (training; eval examples bring their own fixed masks).
`data_collator` picks the one a recipe trains with; eval uses the same one, so base and tuned models
see the same batches.
"""

from __future__ import annotations

from ftcli.data.tokenize import IGNORE_INDEX, hide_tokens, mask_token_id
from ftcli.recipe import Recipe


class PadCollator:
    """Pads a list of examples to the longest one in the batch (dynamic padding, right side).
    Examples without labels (masked-lm training, before masking) give a batch without labels."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        batch = {
            "input_ids": torch.full((len(examples), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
        }
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(e["input_ids"])
            batch["attention_mask"][i, :n] = 1
        if "labels" in examples[0]:
            batch["labels"] = _labels(examples)
        return batch


def _labels(examples: list[dict]):
    import torch

    if not isinstance(examples[0]["labels"], list):  # class ids
        return torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    # Token labels get their own width: a causal LM's match its inputs, an encoder-decoder's (the
    # target) do not.
    labels = torch.full((len(examples), max(len(e["labels"]) for e in examples)), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, :len(e["labels"])] = torch.tensor(e["labels"], dtype=torch.long)
    return labels


class MaskingCollator:
    """masked-lm batches. Training examples (no labels) are padded, then `probability` of their real
    tokens (never special tokens or padding) are hidden (`tokenize.hide_tokens`), new masks in every
    batch from a generator seeded once. Eval examples carry masks fixed at tokenization
    (`tokenize.masked_examples`) and are only padded: every evaluation, during training, after a
    resume and in `ftcli eval`, scores the very same masks."""

    def __init__(self, tokenizer, probability: float, seed: int):
        import torch

        self.pad = PadCollator(tokenizer.pad_token_id)
        self.mask_id, self.vocab_size, self.probability = mask_token_id(tokenizer), len(tokenizer), probability
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        carry = sum("labels" in e for e in examples)
        if carry == len(examples):
            return self.pad(examples)  # already masked (eval)
        if carry:
            raise ValueError("a masked-lm batch mixes examples with fixed masks (eval) and without (training)")
        batch = self.pad(examples)
        ids = batch["input_ids"]
        eligible = batch["attention_mask"].bool() & ~torch.isin(ids, self.special_ids)
        batch["input_ids"], batch["labels"] = hide_tokens(ids, eligible, self.probability, self.generator,
                                                          self.mask_id, self.vocab_size)
        return batch


class PackingCollator:
    """Concatenates a batch's examples into a single row with per-example position_ids."""

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        ids, positions, labels = [], [], []
        for e in examples:
            n = len(e["input_ids"])
            ids += e["input_ids"]
            positions += range(n)
            labels += [IGNORE_INDEX] + list(e["labels"][1:])
        return {"input_ids": torch.tensor([ids], dtype=torch.long),
                "position_ids": torch.tensor([positions], dtype=torch.long),
                "labels": torch.tensor([labels], dtype=torch.long),
                # transformers looks for packed sequences only when there is no KV cache; a model
                # in eval mode would otherwise make one and attend across examples.
                "use_cache": False}


def data_collator(recipe: Recipe, tokenizer):
    """Batches for the task: padded, and for masked-lm training with tokens hidden (seeded by train.seed)."""
    if recipe.task == "masked-lm":
        return MaskingCollator(tokenizer, recipe.data.mlm_probability, recipe.train.seed)
    if recipe.data.packing:
        return PackingCollator()
    return PadCollator(tokenizer.pad_token_id)
