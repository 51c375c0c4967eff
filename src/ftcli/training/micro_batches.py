"""Split one padded batch into passes of at most N tokens, for bounded activation memory.

Activations kept for backward grow with the tokens of a forward pass (about 2.4 MB per token for
SmolLM2-135M with LoRA in fp32), so a batch of 8 long rows peaks at gigabytes. When the loss is a sum
divided by the label tokens of the whole batch (Trainer's `num_items_in_batch`), running the rows in
several forward/backward passes and letting the gradients add up gives the same gradients as one pass.
Rows are sorted by length first and each pass is cut to its own longest row, so the split also drops
padding the whole batch would have carried.

A packed batch (`data.packing`: one row, position_ids restarting at 0 for each example, no attention
mask) is cut between examples instead: each pass is a run of whole consecutive examples. The first
label of every example is ignored by the packing collator, so no target is lost at a cut, and each
pass still starts at position 0, where transformers finds the examples' boundaries.
"""

from __future__ import annotations

from ftcli.data.tokenize import IGNORE_INDEX


def split_passes(inputs: dict, max_tokens: int) -> list[dict]:
    """`inputs` as passes of at most `max_tokens` tokens: padded rows grouped, or a packed row cut
    between examples. A batch it cannot split (neither kind) stays whole."""
    if "attention_mask" in inputs:
        return split_by_tokens(inputs, max_tokens)
    positions = inputs.get("position_ids")
    if positions is not None and positions.dim() == 2 and positions.shape[0] == 1:
        return split_packed(inputs, max_tokens)
    return [inputs]


def split_packed(inputs: dict, max_tokens: int) -> list[dict]:
    """A packed row (batch of one, position_ids restarting at 0 per example) as passes of whole
    consecutive examples, each at most `max_tokens` tokens (a longer example gets a pass of its own)."""
    positions = inputs["position_ids"][0]
    width = positions.shape[0]
    if width <= max_tokens:
        return [inputs]
    starts = (positions == 0).nonzero().flatten().tolist()
    labels = inputs.get("labels")
    if not starts or starts[0] != 0 or (labels is not None and (labels[0, starts] != IGNORE_INDEX).any()):
        return [inputs]  # not a packed row as the collator makes them (a cut would lose a target)
    cuts, begin = [], 0
    for start, end in zip(starts, starts[1:] + [width]):
        if end - begin > max_tokens and start > begin:
            cuts.append((begin, start))
            begin = start
    cuts.append((begin, width))
    return [_columns(inputs, a, b, width) for a, b in cuts]


def _columns(inputs: dict, begin: int, end: int, width: int) -> dict:
    """Positions begin..end of every sequence-shaped tensor; anything else as it is."""
    return {key: value[:, begin:end] if hasattr(value, "dim") and value.dim() >= 2 and value.shape[1] == width
            else value for key, value in inputs.items()}


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
