"""One forward pass over many token sequences, in length-sorted, right-padded batches: little padding,
and a sequence's result does not depend on its batch. Shared by the preference and reward-model evals."""

from __future__ import annotations

from collections.abc import Iterator

from ftcli.progress import Progress


def sorted_forward(model, sequences: list[list[int]], pad_id: int, batch_size: int, desc: str) -> Iterator[tuple]:
    """Yield (index of each sequence in the batch, the batch's logits), without dropout or gradients."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    device = next(model.parameters()).device
    with torch.inference_mode(), Progress(f"{desc}: batch", -(-len(order) // batch_size)) as progress:
        for done, start in enumerate(range(0, len(order), batch_size), 1):
            chunk = order[start:start + batch_size]
            width = max(len(sequences[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(chunk):  # right-padded: a classifier pools the last non-pad token
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, :len(sequences[i])] = 1
            yield chunk, model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            progress.update(done)
