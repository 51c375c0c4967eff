"""The text summary of attention weights: for each query token, the key tokens it attends to most,
averaged over the chosen layers and heads; and finding a token (`--token fox`) among the text's."""

from __future__ import annotations

import difflib

from ftcli.errors import UserError
from ftcli.inspection.attention import Attention, AttentionResult

_TITLES = {"attentions": "self-attention", "encoder": "encoder self-attention (over the text)",
           "decoder": "decoder self-attention (over the decoder text)",
           "cross": "cross-attention (decoder tokens -> text tokens)"}


def averaged(part: Attention, layers: list[int] | None = None, heads: list[int] | None = None):
    """[queries, keys]: the mean over the chosen layers and heads (all by default)."""
    weights = part.weights
    if layers is not None:
        weights = weights[layers]
    if heads is not None:
        weights = weights[:, heads]
    return weights.mean(dim=(0, 1))


def check_selection(part: Attention, layer: int | None, head: int | None) -> None:
    layers, heads = part.shape
    if layer is not None and not 0 <= layer < layers:
        raise UserError(f"--layer {layer} is out of range: the model has layers 0..{layers - 1}")
    if head is not None and not 0 <= head < heads:
        raise UserError(f"--head {head} is out of range: the model has heads 0..{heads - 1}")


def rows_of(part: Attention, token: str) -> list[int]:
    """The positions of `token` (as read, "fox", or as the tokenizer spells it, "Ġfox") among the
    query tokens; a UserError naming the close matches when it is not there."""
    rows = [i for i, (raw, label) in enumerate(zip(part.queries, part.query_labels)) if token in (raw, label)]
    rows = rows or [i for i, label in enumerate(part.query_labels) if label.lower() == token.lower()]
    if rows:
        return rows
    labels = list(dict.fromkeys(part.query_labels))
    close = difflib.get_close_matches(token, labels, n=5, cutoff=0.5)
    close = close or [label for label in labels if len(label) > 1 and token.lower() in label.lower()][:5]
    hint = f"close matches: {', '.join(close)}" if close else f"the tokens are: {' '.join(labels[:64])}"
    raise UserError(f"--token {token!r} is not one of the text's tokens", hint=hint)


def top_keys(matrix, row: int, k: int) -> list[tuple[int, float]]:
    """The `k` key positions `row` attends to most, with their weights, highest first."""
    values, positions = matrix[row].topk(min(k, matrix.shape[1]))
    return [(int(p), float(v)) for p, v in zip(positions, values)]


def part_summary(part: Attention, top: int, rows: list[int] | None = None, layers: list[int] | None = None,
                 heads: list[int] | None = None) -> list[str]:
    matrix = averaged(part, layers, heads)
    repeated = {label for label in part.key_labels + part.query_labels
                if part.key_labels.count(label) > 1 or part.query_labels.count(label) > 1}

    def name(labels: list[str], i: int) -> str:  # a repeated token carries its position
        return f"{labels[i]}[{i}]" if labels[i] in repeated else labels[i]

    width = max(len(name(part.query_labels, i)) for i in (rows if rows is not None else range(len(part.queries))))
    lines = []
    for row in rows if rows is not None else range(len(part.queries)):
        attended = "  ".join(f"{name(part.key_labels, j)} {w:.2f}" for j, w in top_keys(matrix, row, top))
        lines.append(f"  {name(part.query_labels, row):<{width}} -> {attended}")
    return lines


def summary(result: AttentionResult, top: int = 3, token: str | None = None, layer: int | None = None,
            head: int | None = None) -> str:
    """What each token (or only `token`) attends to most, for each kind of attention the result has."""
    main = result.attentions
    for part in result.parts.values():  # an encoder-decoder's decoder may have other counts
        check_selection(part, layer, head)
    layers, heads = main.shape
    layers_sel = [layer] if layer is not None else None
    heads_sel = [head] if head is not None else None
    over = " and ".join([f"layer {layer}" if layer is not None else f"all {layers} layers",
                         f"head {head}" if head is not None else f"all {heads} heads"])
    lines = [f"{result.model}: {result.task}, {layers} layers x {heads} heads; weights averaged over {over}",
             f"tokens ({len(main.queries)}): {' '.join(main.query_labels)}"]
    if token is not None and not any(_has(part, token) for part in result.parts.values()):
        rows_of(main, token)  # raises, naming the close matches
    for kind, part in result.parts.items():
        if token is not None and not _has(part, token):
            continue  # the token is in another part (the decoder text, say)
        lines.append(f"{_TITLES[kind]}: top {top} attended tokens")
        lines += part_summary(part, top, rows_of(part, token) if token is not None else None, layers_sel, heads_sel)
    return "\n".join(lines)


def _has(part: Attention, token: str) -> bool:
    try:
        rows_of(part, token)
    except UserError:
        return False
    return True
