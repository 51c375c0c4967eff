"""Batches for the Trainer: padded (dynamic, right side), packed end to end (causal-lm), or with
tokens hidden for a masked LM to recover. `data_collator` picks the one a recipe trains with; eval
uses the same one, so base and tuned models see the same batches.
"""

from __future__ import annotations

from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.errors import ModelError
from ftcli.recipe import Recipe


class PadCollator:
    """Pads a list of examples to the longest one in the batch (dynamic padding, right side)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        batch = {
            "input_ids": torch.full((len(examples), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
        }
        token_labels = isinstance(examples[0]["labels"], list)
        # Token labels get their own width: a causal LM's match its inputs, an encoder-decoder's
        # (the target) do not.
        label_width = max(len(e["labels"]) for e in examples) if token_labels else 0
        labels = (torch.full((len(examples), label_width), IGNORE_INDEX, dtype=torch.long) if token_labels
                  else torch.tensor([e["labels"] for e in examples], dtype=torch.long))
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(e["input_ids"])
            batch["attention_mask"][i, :n] = 1
            if token_labels:
                labels[i, :len(e["labels"])] = torch.tensor(e["labels"])
        batch["labels"] = labels
        return batch


class MaskingCollator:
    """Pads like PadCollator, then hides `probability` of the real tokens (never special tokens or
    padding): 80% become the mask token, 10% a random token, 10% stay as they are — BERT's recipe,
    as in transformers' DataCollatorForLanguageModeling. Seeded: the same seed and batches give the
    same masks, so `ftcli eval` scores the base and the tuned model on the very same masks."""

    def __init__(self, tokenizer, probability: float, seed: int):
        import torch

        if tokenizer.mask_token_id is None:
            raise ModelError(f"masked-lm needs a tokenizer with a mask token; {tokenizer.name_or_path or 'this one'} "
                             "has none", hint="use an encoder's tokenizer (bert, roberta, ...) or tokenizer.train")
        self.pad = PadCollator(tokenizer.pad_token_id)
        self.mask_id, self.vocab_size, self.probability = tokenizer.mask_token_id, len(tokenizer), probability
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        batch = self.pad(examples)
        ids = batch["input_ids"]
        eligible = batch["attention_mask"].bool() & ~torch.isin(ids, self.special_ids)
        hidden = eligible & (torch.rand(ids.shape, generator=self.generator) < self.probability)
        if not hidden.any() and eligible.any():
            # A batch with nothing hidden has no loss at all (0/0 = NaN): hide one token.
            hidden.view(-1)[eligible.view(-1).nonzero()[0]] = True
        batch["labels"] = torch.where(hidden, ids, torch.full_like(ids, IGNORE_INDEX))
        roll = torch.rand(ids.shape, generator=self.generator)
        noise = torch.randint(self.vocab_size, ids.shape, generator=self.generator)
        masked = ids.clone()
        masked[hidden & (roll < 0.8)] = self.mask_id
        swap = hidden & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = noise[swap]
        batch["input_ids"] = masked
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
    """Batches for the task: padded, and for masked-lm with tokens hidden (seeded by train.seed)."""
    if recipe.task == "masked-lm":
        return MaskingCollator(tokenizer, recipe.data.mlm_probability, recipe.train.seed)
    if recipe.data.packing:
        return PackingCollator()
    return PadCollator(tokenizer.pad_token_id)
