"""One run's report page: summary, curves, eval metrics (base vs tuned), data, environment, recipe."""

from __future__ import annotations

from ftcli.progress import duration
from ftcli.reporting import history, html, plots
from ftcli.reporting.run_files import RunFiles

# Metrics where a smaller number is the better one (the change column's colour).
_LOWER_IS_BETTER = ("loss", "perplexity", "error", "ter")


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def loss_plot(run: RunFiles) -> bytes:
    """loss.png: the run's train and eval loss."""
    return plots.loss_png([(run.name, history.train_loss(run.history), history.eval_loss(run.history))],
                          f"{run.name}: loss")


def _recipe_value(recipe: dict, *keys):
    for key in keys:
        recipe = recipe.get(key) if isinstance(recipe, dict) else None
    return recipe


def _summary(run: RunFiles) -> str:
    t, r = run.train, run.recipe
    lora = _recipe_value(r, "lora")
    losses = history.train_loss(run.history)
    return html.section("Summary", html.facts([
        ("task", r.get("task")), ("base model", _recipe_value(r, "model", "name_or_path") or "from config"),
        ("method", f"LoRA r={lora.get('r')}" if isinstance(lora, dict) else "full fine-tune"),
        ("preference", _recipe_value(r, "preference", "method")),
        ("steps", t.get("global_step")), ("epochs", t.get("epoch")),
        ("train loss (mean)", t.get("train_loss")), ("train loss (last logged)", losses[-1][1] if losses else None),
        ("runtime", duration(t["train_runtime"]) if isinstance(t.get("train_runtime"), (int, float)) else None),
        ("tokens trained", t.get("num_input_tokens_seen")), ("samples/s", t.get("train_samples_per_second")),
        ("effective batch size", t.get("global_batch_size")), ("resumed from", t.get("resumed_from")),
        ("model from", t.get("best_checkpoint")), ("run directory", str(run.run_dir)),
    ]), "summary")


def _curves(run: RunFiles, loss_png: bytes) -> str:
    h = run.history
    preference = [html.image(plots.loss_png([(run.name, *points)], f"{run.name}: {key}", key), key,
                             f"{key.replace('/', '-')}-plot")
                  for key in history.PREFERENCE_CURVES if any(points := history.logged(h, key))]
    return html.section("Training curves", html.plots(
        html.image(loss_png, "loss curves", "loss-plot"),
        html.image(plots.line_png(history.learning_rate(h), "learning rate", "learning rate", scientific=True),
                   "learning rate", "lr-plot"),
        html.image(plots.line_png(history.throughput(h), "tokens/s", "throughput (non-padding tokens/s)"),
                   "throughput", "throughput-plot"),
        *preference,
    ), "curves")


def _metric(v) -> str | None:
    """Four decimals, as `ftcli eval` prints them."""
    return f"{v:.4f}" if isinstance(v, (int, float)) else None


def _metric_rows(tuned: dict, base: dict | None) -> tuple[list[list], list[list[str]]]:
    rows, classes = [], []
    for name, v in tuned.items():
        if not isinstance(v, (int, float)) and v is not None:
            continue
        b = (base or {}).get(name)
        change = v - b if isinstance(v, (int, float)) and isinstance(b, (int, float)) else None
        better = None if not change else (change < 0) == lower_is_better(name)
        rows.append([name, _metric(b), _metric(v), f"{change:+.4f}" if change is not None else None]
                    if base is not None else [name, _metric(v)])
        classes.append(["", "", "", "" if better is None else "better" if better else "worse"][:len(rows[-1])])
    return rows, classes


def _metrics(run: RunFiles) -> str:
    parts = []
    if run.eval and isinstance(run.eval.get("tuned"), dict):
        base = run.eval.get("base") if isinstance(run.eval.get("base"), dict) else None
        rows, classes = _metric_rows(run.eval["tuned"], base)
        header = ["metric", "base", "tuned", "change"] if base is not None else ["metric", "tuned"]
        parts.append(f"<p>ftcli eval on {html.value(run.eval.get('examples'))} examples of "
                     f"{html.value(run.eval.get('eval_data'))}</p>" + html.table(header, rows, classes, id="eval-table"))
        confusion = run.run_dir / "confusion_matrix.png"  # a classifier's, drawn by ftcli eval
        if run.eval.get("confusion_matrix_png") and confusion.is_file():
            parts.append(html.plots(html.image(confusion.read_bytes(), "confusion matrix", "confusion-plot")))
    else:
        parts.append(html.none(f"not evaluated yet: `ftcli eval {run.run_dir}` adds the base-vs-tuned table here"))
    during = history.final_eval(run.history)
    if during:
        parts.append("<p>last evaluation during training</p>"
                     + html.table(["metric", "value"], [[k, v] for k, v in during.items()], id="train-eval-table"))
    return html.section("Eval metrics", "".join(parts), "metrics")


def _data(run: RunFiles, recipe_max_length) -> str:
    t = run.train
    parts = [html.facts([("mode", t.get("mode")), ("format", t.get("format")), ("training examples", t.get("train_samples")),
                         ("truncated at max_length", t.get("examples_truncated")),
                         ("dropped (whole reply cut away)", t.get("examples_dropped")),
                         ("non-finite batches skipped", t.get("nonfinite_batches_skipped"))])]
    sources = [s for s in t.get("data_sources") or [] if isinstance(s, dict)]
    if sources:
        parts.append(html.table(["split", "source", "weight", "rows read", "rows kept", "rows used"],
                                [[s.get("split"), s.get("source"), s.get("weight"), s.get("rows_read"), s.get("rows_kept"),
                                  s.get("rows_used")] for s in sources], id="sources-table"))
    cleaning = {split: c for split, c in (t.get("data_cleaning") or {}).items() if isinstance(c, dict)}
    if cleaning:
        reasons = sorted({k for c in cleaning.values() for k in c})
        parts.append("<p>rows dropped or changed by cleaning</p>" + html.table(
            ["split"] + reasons, [[split] + [c.get(k, 0) for k in reasons] for split, c in cleaning.items()],
            id="cleaning-table"))
    lengths = t.get("example_lengths")
    if isinstance(lengths, dict) and lengths.get("counts"):
        parts.append(html.facts([("tokens per example", f"min {lengths.get('min')}, mean {lengths.get('mean')}, "
                                                        f"max {lengths.get('max')} over {lengths.get('n')} examples")]))
        parts.append(html.plots(html.image(plots.histogram_png(lengths, recipe_max_length, "training example lengths"),
                                           "length histogram", "lengths-plot")))
    return html.section("Data", "".join(parts), "data")


def _environment(run: RunFiles) -> str:
    t = run.train
    env = t.get("environment") if isinstance(t.get("environment"), dict) else {}
    quant = t.get("quantization")
    parts = [html.facts([
        ("device", env.get("device")), ("device name", env.get("device_name")), ("processes", t.get("world_size")),
        ("weights dtype", t.get("dtype")), ("mixed precision", t.get("precision")),
        ("attention", t.get("attn_implementation")), ("quantization", str(quant) if quant else None),
        ("peak memory", html.megabytes(t.get("peak_memory_bytes"))),
        ("planned peak memory", html.megabytes(t.get("planned_memory_bytes"))),
        ("python", env.get("python")), ("platform", env.get("platform")),
    ])]
    versions = env.get("versions") or {}
    if versions:
        parts.append(html.table(["package", "version"], [[k, v] for k, v in versions.items()], id="versions-table"))
    return html.section("Environment", "".join(parts), "environment")


def run_page(run: RunFiles, loss_png: bytes) -> str:
    max_length = _recipe_value(run.recipe, "data", "max_length")
    subtitle = f"{run.recipe.get('task', '?')} · {_recipe_value(run.recipe, 'model', 'name_or_path') or 'from config'}"
    return html.document(f"ftcli run report: {run.name}", subtitle, [
        _summary(run), _curves(run, loss_png), _metrics(run), _data(run, max_length), _environment(run),
        html.section("Recipe (resolved)", html.pre(run.recipe_text, "recipe") if run.recipe_text
                     else html.none("no recipe.yaml in the run"), "recipe-section"),
    ])
