"""masked-lm: plain text as examples ([CLS] text [SEP]), and the collator that hides tokens for the
model to recover. The loss covers only the hidden tokens; every other label is IGNORE_INDEX."""

from __future__ import annotations

from ftcli.errors import DataError, ModelError
from ftcli.preprocess import IGNORE_INDEX, PadCollator, Tokenized


def tokenize_masked(rows: list[dict], tokenizer, recipe, source: str = "data") -> Tokenized:
    """Each row's text with the tokenizer's own special tokens; the collator picks what to mask."""
    field = recipe.data.text_field
    if rows and field not in rows[0]:
        raise DataError(f"{source}: masked-lm learns from plain text, but the rows have no '{field}' field "
                        f"(they have: {', '.join(rows[0])})", hint="set data.text_field to your text field")
    max_length = recipe.data.max_length
    encoded = tokenizer([str(r[field]) for r in rows], truncation=True, max_length=max_length)["input_ids"]
    truncated = sum(len(ids) >= max_length for ids in encoded)  # (or exactly max_length long)
    return Tokenized([{"input_ids": ids, "labels": list(ids)} for ids in encoded], truncated)


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
