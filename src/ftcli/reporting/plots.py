"""The report's pictures as PNG bytes (matplotlib, Agg backend, imported only when a picture is drawn)."""

from __future__ import annotations

import io

# One size for every plot: 7 x 3.4 inches at 100 dpi is 700 x 340 pixels, two to a row on a wide screen.
_SIZE, _DPI = (7.0, 3.4), 100


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, never a window), imported on first use: every
    picture ftcli draws (reports, eval's confusion matrix, sweep.png, attention heatmaps) comes through here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure():
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and token counts are whole numbers
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    return buffer.getvalue()


def _labelled(plt, fig, ax, ylabel: str, title: str, xlabel: str = "step") -> bytes:
    """Axis labels and title on, then the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _png(plt, fig)


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} logged", ha="center", va="center", transform=ax.transAxes, color="#888")


def loss_png(curves: list[tuple[str, list, list]], title: str, quantity: str = "loss") -> bytes:
    """Train (solid) and eval (dashed, dots) loss (or another `quantity` logged in training and at evals)
    against the step, one colour per run: (label, train points, eval points) each. One run is loss.png;
    several are the comparison's overlay."""
    plt, fig, ax = _figure()
    drawn = False
    for i, (label, train, evaluated) in enumerate(curves):
        colour = f"C{i % 10}"
        prefix = f"{label} " if len(curves) > 1 else ""
        if train:
            ax.plot(*zip(*train), color=colour, label=f"{prefix}train {quantity}")
            drawn = True
        if evaluated:
            ax.plot(*zip(*evaluated), color=colour, linestyle="--", marker="o", markersize=4,
                    label=f"{prefix}eval {quantity}")
            drawn = True
    if drawn:
        ax.legend(fontsize=8)
    else:
        _empty(ax, quantity)
    return _labelled(plt, fig, ax, quantity, title)


def line_png(points: list[tuple[float, float]], ylabel: str, title: str, scientific: bool = False) -> bytes:
    """One quantity against the step (learning rate, tokens/s)."""
    plt, fig, ax = _figure()
    if points:
        ax.plot(*zip(*points), color="C2", marker="." if len(points) < 40 else None)
        if scientific:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        _empty(ax, ylabel)
    return _labelled(plt, fig, ax, ylabel, title)


def histogram_png(histogram: dict, max_length: int | None, title: str) -> bytes:
    """Tokens per training example, from train_results' bin edges and counts; max_length marked."""
    plt, fig, ax = _figure()
    edges, counts = histogram["edges"], histogram["counts"]
    ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge", color="C0",
           edgecolor="white")
    if max_length:
        ax.axvline(max_length, color="C3", linestyle=":", label=f"max_length {max_length}")
        ax.legend(fontsize=8)
    return _labelled(plt, fig, ax, "examples", title, xlabel="tokens per example")
