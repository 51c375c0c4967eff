"""sweep.png: the objective per trial (with the best so far), and each parameter's effect (objective
against the parameter's value, one panel per parameter)."""

from __future__ import annotations

from pathlib import Path

PLOT_FILE = "sweep.png"
_COLORS = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAIL": "tab:red"}


def write_plot(path: Path, result, log_keys: set[str]) -> Path | None:
    """Draw the sweep's panels into `path`; None when no trial has a value yet."""
    scored = [r for r in result.trials if r.value is not None]
    if not scored:
        return None
    from ftcli.reporting.plots import pyplot

    plt = pyplot()

    keys = list(scored[0].params)
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(4.2 * (1 + len(keys)), 3.6), squeeze=False)
    axes = axes[0]
    _per_trial(axes[0], scored, result)
    for ax, key in zip(axes[1:], keys):
        _effect(ax, scored, key, result.objective, key in log_keys)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _per_trial(ax, scored, result) -> None:
    ordered = sorted(scored, key=lambda r: r.trial)
    for state, color in _COLORS.items():
        points = [r for r in ordered if r.state == state]
        if points:
            ax.scatter([r.trial for r in points], [r.value for r in points], color=color, label=state.lower())
    complete = [r for r in ordered if r.state == "COMPLETE"]
    if complete:  # the best so far, a step line over the finished trials
        best, xs, ys = None, [], []
        pick = min if result.direction == "minimize" else max
        for r in complete:
            best = r.value if best is None else pick(best, r.value)
            xs.append(r.trial)
            ys.append(best)
        ax.step(xs, ys, where="post", color="gray", linewidth=1, label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    ax.set_xlabel("trial")
    ax.set_ylabel(result.objective)
    ax.set_title(f"{result.objective} per trial")
    ax.legend(fontsize=8)


def _effect(ax, scored, key: str, objective: str, log_scale: bool) -> None:
    values = [r.params.get(key) for r in scored]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        xs = values
    else:  # choices of text, lists or booleans: one position each
        labels = list(dict.fromkeys(str(v) for v in values))
        xs = [labels.index(str(v)) for v in values]
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.scatter(xs, [r.value for r in scored], c=[_COLORS.get(r.state, "gray") for r in scored])
    if numeric and log_scale:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(objective)
    ax.set_title(key)
