"""Attention heatmaps as PNG files (matplotlib, Agg: no display needed): one file per layer with a grid
of its heads, and one of the weights averaged over the chosen layers and heads. Query tokens run down
the rows, key tokens along the columns. Beyond MAX_TOKENS tokens the images show the first MAX_TOKENS
(and say so in their titles): tick labels stop being readable, and the JSON keeps every weight."""

from __future__ import annotations

import math
from pathlib import Path

from ftcli.inspection.attention import Attention, AttentionResult
from ftcli.inspection.attention_summary import averaged
from ftcli.reporting.plots import pyplot

MAX_TOKENS = 64
_TITLES = {"attentions": "attention", "encoder": "encoder self-attention", "decoder": "decoder self-attention",
           "cross": "cross-attention"}


def write_heatmaps(result: AttentionResult, out_dir: str | Path, layer: int | None = None,
                   head: int | None = None) -> list[Path]:
    """The PNGs of every kind of attention in `result` (`layer_NN.png` and `average.png`; with a decoder
    text each name starts with encoder_, decoder_ or cross_); `layer`/`head` draw only those."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, part in result.parts.items():
        prefix = "" if kind == "attentions" else f"{kind}_"
        layers = [layer] if layer is not None else list(range(part.shape[0]))
        heads = [head] if head is not None else list(range(part.shape[1]))
        for number in layers:
            path = out_dir / f"{prefix}layer_{number:02d}.png"
            _layer_figure(part, number, heads, f"{result.model} — {_TITLES[kind]}, layer {number}", path)
            written.append(path)
        path = out_dir / f"{prefix}average.png"
        over = f"layer {layer}" if layer is not None else f"{part.shape[0]} layers"
        over += f", head {head}" if head is not None else f", {part.shape[1]} heads"
        _average_figure(part, averaged(part, [layer] if layer is not None else None,
                                       [head] if head is not None else None),
                        f"{result.model} — {_TITLES[kind]}, mean over {over}", path)
        written.append(path)
    return written


def _shown(part: Attention) -> tuple[int, int, str]:
    """How many query and key tokens to draw, and a note for the title when some are left out."""
    rows, cols = min(len(part.queries), MAX_TOKENS), min(len(part.keys), MAX_TOKENS)
    cut = len(part.queries) > rows or len(part.keys) > cols
    return rows, cols, f" (first {MAX_TOKENS} of {max(len(part.queries), len(part.keys))} tokens)" if cut else ""


def _cell_inches(tokens: int) -> float:
    return min(8.0, max(2.5, 0.12 * tokens + 1.0))


def _font_size(tokens: int, inches: float) -> float:
    return max(3.0, min(9.0, 0.7 * inches * 72 / max(tokens, 1)))  # about one label per row fits


def _ticks(axis, part: Attention, rows: int, cols: int, size: float, left: bool, bottom: bool) -> None:
    axis.set_xticks(range(cols))
    axis.set_yticks(range(rows))
    axis.set_xticklabels(part.key_labels[:cols] if bottom else [], rotation=90, fontsize=size)
    axis.set_yticklabels(part.query_labels[:rows] if left else [], fontsize=size)
    axis.tick_params(length=0)


def _layer_figure(part: Attention, layer: int, heads: list[int], title: str, path: Path) -> None:
    plt = pyplot()

    rows, cols, note = _shown(part)
    across = math.ceil(math.sqrt(len(heads)))
    down = math.ceil(len(heads) / across)
    inches = _cell_inches(max(rows, cols))
    size = _font_size(max(rows, cols), inches)
    figure, axes = plt.subplots(down, across, figsize=(across * inches + 1, down * inches + 1), squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= len(heads):
            axis.axis("off")
            continue
        weights = part.weights[layer, heads[index], :rows, :cols].numpy()
        axis.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-6), aspect="auto")
        axis.set_title(f"head {heads[index]}", fontsize=max(size, 8))
        _ticks(axis, part, rows, cols, size, left=index % across == 0,
               bottom=index // across == down - 1 or index + across >= len(heads))
    figure.suptitle(title + note, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _average_figure(part: Attention, matrix, title: str, path: Path) -> None:
    plt = pyplot()

    rows, cols, note = _shown(part)
    inches = _cell_inches(max(rows, cols)) + 1.5
    size = _font_size(max(rows, cols), inches - 1.5)
    figure, axis = plt.subplots(figsize=(inches + 1.5, inches))
    image = axis.imshow(matrix[:rows, :cols].numpy(), cmap="viridis", vmin=0.0, aspect="auto")
    _ticks(axis, part, rows, cols, size, left=True, bottom=True)
    axis.set_xlabel("attended to (key)", fontsize=9)
    axis.set_ylabel("attending (query)", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_title(title + note, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
