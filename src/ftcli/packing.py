"""Padding-free batches for causal LMs: a batch's examples end to end in one row, nothing padded.

Each example keeps its own positions (position_ids restart at 0) and no 2D attention mask is passed,
so transformers 5 reads the example boundaries from position_ids and builds a block-diagonal causal
mask: no token attends across examples. The first token of each example is not a target, since it
would be "predicted" from the previous example's last token. The loss then equals the padded batch's.
"""

from __future__ import annotations

from ftcli.preprocess import IGNORE_INDEX


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
