"""Several runs on one page: their loss curves overlaid, the recipe keys that differ, final metrics
side by side."""

from __future__ import annotations

from ftcli.recipe.dotted import dotted_keys
from ftcli.reporting import history, html
from ftcli.reporting.run_files import RunFiles

_MISSING = object()


def differing_keys(recipes: list[dict]) -> dict[str, list]:
    """Each dotted recipe key whose value is not the same in every run, with each run's value
    (`_MISSING` where a run's recipe lacks it)."""
    flats = [dotted_keys(r) for r in recipes]
    keys = sorted({k for f in flats for k in f})
    return {k: [f.get(k, _MISSING) for f in flats] for k in keys if len({repr(f.get(k, _MISSING)) for f in flats}) > 1}


def _shown(v) -> str:
    return "(not set)" if v is _MISSING else html.value(v if not isinstance(v, (list, dict)) else str(v))


def final_metrics(run: RunFiles) -> dict:
    """What to set side by side: training's numbers, the last eval during training, ftcli eval's tuned metrics."""
    t = run.train
    found = {k: t.get(k) for k in ("global_step", "epoch", "train_loss", "num_input_tokens_seen") if t.get(k) is not None}
    if isinstance(t.get("train_runtime"), (int, float)):
        found["train_runtime (s)"] = t["train_runtime"]
    if html.megabytes(t.get("peak_memory_bytes")):
        found["peak memory"] = html.megabytes(t["peak_memory_bytes"])
    losses = history.train_loss(run.history)
    if losses:
        found["last logged loss"] = losses[-1][1]
    found.update(history.final_eval(run.history))
    tuned = (run.eval or {}).get("tuned")
    if isinstance(tuned, dict):
        found.update({f"ftcli eval (tuned): {k}": v for k, v in tuned.items() if isinstance(v, (int, float))})
    return found


def compare_page(found: list[RunFiles], overlay_png: bytes) -> str:
    names = [r.name for r in found]
    header = ["key"] + names
    differs = differing_keys([r.recipe for r in found])
    recipe_part = html.table(header, [[k] + [_shown(v) for v in vs] for k, vs in differs.items()],
                             id="diff-table") if differs else html.none("the recipes are the same")
    metrics = [final_metrics(r) for r in found]
    keys = list(dict.fromkeys(k for m in metrics for k in m))
    metric_part = html.table(header, [[k] + [m.get(k) for m in metrics] for k in keys], id="metrics-table")
    runs_part = html.table(["run", "directory"], [[r.name, str(r.run_dir)] for r in found], id="runs-table")
    return html.document(f"ftcli run comparison: {', '.join(names)}", f"{len(found)} runs", [
        html.section("Runs", runs_part, "runs"),
        html.section("Loss curves", html.plots(html.image(overlay_png, "loss curves of all runs", "overlay-plot")), "curves"),
        html.section("Recipe keys that differ", recipe_part, "differences"),
        html.section("Final metrics", metric_part, "metrics"),
    ])
