"""Split one padded batch into passes of at most N tokens, for bounded activation memory.

Activations kept for backward grow with the tokens of a forward pass (about 2.4 MB per token for
SmolLM2-135M with LoRA in fp32), so a batch of 8 long rows peaks at gigabytes. When the loss is a sum
divided by the label tokens of the whole batch (Trainer's `num_items_in_batch`), running the rows in
several forward/backward passes and letting the gradients add up gives the same gradients as one pass.
Rows are sorted by length first and each pass is cut to its own longest row, so the split also drops
padding the whole batch would have carried.
"""

from __future__ import annotations


def split_by_tokens(inputs: dict, max_tokens: int) -> list[dict]:
    """`inputs` (a right-padded batch with attention_mask) as a list of row groups, each at most
    `max_tokens` tokens including its own padding (a single longer row still gets a pass of its own)."""
    import torch

    mask = inputs["attention_mask"]
    rows, width = mask.shape
    if rows * width <= max_tokens:
        return [inputs]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    groups, current = [], []
    for row in order:
        # Sorted longest first, a group's width is that of its first row.
        group_width = int(lengths[current[0]]) if current else int(lengths[row])
        if current and (len(current) + 1) * group_width > max_tokens:
            groups.append(current)
            current = []
        current.append(row)
    groups.append(current)
    return [_take(inputs, group, int(lengths[group[0]]), width) for group in groups]


def _take(inputs: dict, rows: list[int], group_width: int, width: int) -> dict:
    """The given rows, with sequence-shaped tensors cut to `group_width` (only padding is cut)."""
    import torch

    index = torch.tensor(rows, device=inputs["attention_mask"].device)
    taken = {}
    for key, value in inputs.items():
        if not hasattr(value, "index_select") or value.dim() == 0:
            taken[key] = value
            continue
        value = value.index_select(0, index)
        if value.dim() >= 2 and value.shape[1] == width:
            value = value[:, :group_width]
        taken[key] = value
    return taken
