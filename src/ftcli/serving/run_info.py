"""What the page shows about the served model, read from the run directory (never written): the run's
name, base model and recipe, its eval table (base vs tuned, from `ftcli eval`) and its loss curve
(the training losses logged in the last checkpoint's trainer_state.json)."""

from __future__ import annotations

import json
from pathlib import Path

from ftcli import runs


def _loss_curve(run_dir: Path) -> list[list[float]]:
    checkpoints = sorted((p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
                         key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    if not checkpoints:
        return []
    try:
        history = json.loads((checkpoints[-1] / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    except (OSError, ValueError, KeyError):
        return []
    return [[e["step"], e["loss"]] for e in history if isinstance(e.get("loss"), (int, float)) and "step" in e]


def _eval_table(run_dir: Path) -> list[dict]:
    path = run_dir / runs.EVAL_RESULTS
    try:
        results = runs.read_json(path) if path.is_file() else {}
    except ValueError:
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
