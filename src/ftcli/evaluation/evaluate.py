"""`ftcli eval`: the same eval data through the base and the tuned model, metrics side by side,
saved with the run."""

from __future__ import annotations

from pathlib import Path

from ftcli import runs
from ftcli.data.sources import describe_source, source_fingerprint
from ftcli.data.splits import load_splits
from ftcli.errors import UserError
from ftcli.evaluation.reports import confusion_png
from ftcli.evaluation.preference import score_pairs
from ftcli.evaluation.reward import score_reward_model
from ftcli.evaluation.scoring import score_model
from ftcli.exporting.model_card import refresh_run_cards
from ftcli.io import write_json
from ftcli.modeling import quantization
from ftcli.modeling.load import load_tokenizer, local_model
from ftcli.progress import log
from ftcli.recipe import Recipe, load_run_recipe, resolve_run
from ftcli.reporting.report import refresh_report
from ftcli.versions import package_versions


def _untrained(recipe: Recipe) -> str:
    return f"untrained {recipe.model.from_config['architecture']} from model.from_config (seed {recipe.train.seed})"


def evaluate_run(target: str | Path | None = None, base: bool = True, limit: int | None = None,
                 harness: list[str] | str | None = None, harness_include: list[str] | None = None,
                 harness_chat_template: bool | None = None) -> dict:
    """Evaluate a run's tuned model (and its base model) on the run's eval data; save and return
    `{"run", "tuned", "base", ...}` (with per-class details and a confusion matrix for classifiers).
    `harness`: lm-evaluation-harness tasks (names or YAML files) run on both models too, their metrics
    merged in as `harness/<task>/<metric>` (`evaluation.harness`)."""
    run_dir = resolve_run(target)
    recipe = load_run_recipe(run_dir)
    tasks = None
    if harness:  # checked before any model loads: an unknown task fails in seconds
        from ftcli.evaluation import harness as lm_harness

        tasks = lm_harness.prepare(recipe.task, lm_harness.split_tasks(harness), harness_include,
                                   harness_chat_template)
    splits = load_splits(recipe)
    rows = splits.eval[:limit] if limit else splits.eval
    if not rows:
        raise UserError(f"{run_dir}: the recipe has no eval data",
                        hint="set data.eval, or data.eval_fraction above 0, and train again")
    tuned = local_model(run_dir / runs.MODEL_DIR)
    tokenizer = load_tokenizer(tuned)
    label2id = None
    if splits.mode == "classification":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(tuned.name_or_path)
        label2id = {str(label): int(i) for label, i in sorted(config.label2id.items(), key=lambda kv: kv[1])}

    log(f"evaluating {run_dir.name} on {len(rows)} eval examples")
    results: dict = {"run": str(run_dir)}
    if recipe.model.quantization is not None:  # QLoRA: the base (and reference) it trained on; model/ is full precision
        results["base_quantization"] = quantization.record(recipe.model.quantization)
        log(f"base model: {recipe.model.name_or_path} quantized to "
            f"{quantization.describe(results['base_quantization'])}, as the adapter was trained on it")
    if splits.mode == "preference":
        score = score_reward_model if recipe.task == "reward-model" else score_pairs
        results["tuned"], base_metrics, tuned_details = score(recipe, tuned, recipe.model, tokenizer, rows,
                                                              splits.format, with_base=base)
        if base:
            results["base"], base_details = base_metrics, {}
    else:
        results["tuned"], tuned_details = score_model(recipe, splits.mode, tuned, tokenizer, rows, label2id,
                                                      "tuned", format=splits.format)
    if base and splits.mode != "preference":
        results["base"], base_details = score_model(recipe, splits.mode, recipe.model, tokenizer, rows, label2id,
                                                    "base", format=splits.format)
    results.update(task=recipe.task, mode=splits.mode, examples=len(rows),
                   eval_data=describe_source(recipe.data.eval) if recipe.data.eval
                   else f"{describe_source(recipe.data.train)} (held-out {recipe.data.eval_fraction:g})",
                   eval_data_sha256=source_fingerprint(recipe.data.eval or recipe.data.train),
                   base_model=recipe.model.name_or_path or _untrained(recipe),
                   versions=package_versions(("ftcli", "transformers", "evaluate", "scikit-learn", "sacrebleu",
                                              "rouge-score")),
                   tuned_details=tuned_details)
    if base:
        results["base_details"] = base_details
    if tasks is not None:
        _merge(results, lm_harness.evaluate_pair(tasks, recipe, tuned, recipe.model if base else None,
                                                 tokenizer, limit))
    if "confusion_matrix" in tuned_details:
        png = confusion_png(tuned_details["confusion_matrix"], tuned_details["labels"],
                            run_dir / "confusion_matrix.png", f"{run_dir.name} (tuned)")
        results["confusion_matrix_png"] = str(png)
    write_json(run_dir / runs.EVAL_RESULTS, results)

    refresh_run_cards(run_dir, log)  # the model card's metrics now include these results
    refresh_report(run_dir, log)  # report.html gains the base-vs-tuned table
    return results


def _merge(results: dict, extra: dict) -> None:
    """Harness metrics join ftcli's own in one table; their standard errors and settings sit beside."""
    for side in ("tuned", "base"):
        if side in extra:
            results[side].update(extra[side])
    results.setdefault("stderr", {}).update(extra["stderr"])
    results["harness"] = extra["harness"]


def compare_runs(targets: list[str]) -> list[dict]:
    """Each run's saved eval results (evaluating, without the base model, runs that have none)."""
    found = []
    for target in targets:
        run_dir = resolve_run(target)
        saved = run_dir / runs.EVAL_RESULTS
        found.append(runs.read_json(saved) if saved.is_file() else evaluate_run(run_dir, base=False))
    return found
