"""A finished run found from what the user typed (a run directory, a recipe file naming it, or nothing:
the latest run here), and the recipe it was trained with."""

from __future__ import annotations

from pathlib import Path

from ftcli import runs
from ftcli.errors import UserError
from ftcli.recipe.loading import load_recipe


def resolve_run(target: str | Path | None = None) -> Path:
    """A run directory from a run dir, a recipe file (its output_dir), or nothing (the latest run)."""
    if target is None:
        return runs.find_latest_run()
    path = Path(target).expanduser()
    if path.is_file():
        path = Path(load_recipe(path).train.output_dir)
    if not path.exists():
        raise UserError(f"run not found: {target}")
    if not runs.is_finished(path):
        raise UserError(f"{path} is not a finished run (no {runs.MODEL_DIR}/ and {runs.TRAIN_RESULTS})",
                        hint="finish training first with `ftcli finetune RECIPE`")
    return path.resolve()


def load_run_recipe(run_dir: Path):
    return load_recipe(run_dir / runs.RECIPE_FILE)
