"""What the page shows about the served model, read from the run directory (never written): the run's
name, base model and recipe, its eval table (base vs tuned, from `ftcli eval`) and its loss curve
(the training losses of its log history, `runs.log_history`)."""

from __future__ import annotations

from pathlib import Path

from ftcli import runs


def _loss_curve(run_dir: Path) -> list[list[float]]:
    return [[e["step"], e["loss"]] for e in runs.log_history(run_dir)
            if isinstance(e.get("loss"), (int, float)) and "step" in e]


def _eval_table(run_dir: Path) -> list[dict]:
    results = runs.read_json_if_readable(run_dir / runs.EVAL_RESULTS)
    if not isinstance(results, dict):
        return []
    tuned, base = results.get("tuned") or {}, results.get("base") or {}
    return [{"metric": k, "base": base.get(k), "tuned": v} for k, v in tuned.items()
            if isinstance(v, (int, float)) or v is None]


def describe_run(run_dir: Path | None, model_id: str, base_model: str | None, serving_base: bool) -> dict:
    """The page's facts about the model; `run_dir` None: a model served with --model (no run)."""
    info = {"name": model_id, "base_model": base_model, "serving_base": serving_base, "recipe": None,
            "eval": [], "loss": [], "run_dir": str(run_dir) if run_dir else None}
    if run_dir is not None:
        recipe = run_dir / runs.RECIPE_FILE
        info["recipe"] = recipe.read_text(encoding="utf-8") if recipe.is_file() else None
        info["eval"], info["loss"] = _eval_table(run_dir), _loss_curve(run_dir)
    return info
