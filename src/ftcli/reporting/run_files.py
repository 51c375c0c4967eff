"""A finished run's files, read once for a report: the recipe, train and eval results, the log history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ftcli import runs
from ftcli.errors import UserError


@dataclass
class RunFiles:
    run_dir: Path
    recipe_text: str
    recipe: dict
    train: dict
    history: list[dict] = field(default_factory=list)
    eval: dict | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name


def read_run(run_dir: str | Path) -> RunFiles:
    """The files of a finished run; a folder that is not one is the user's mistake (UserError)."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise UserError(f"run not found: {run_dir}", hint="name a run directory, such as runs/NAME")
    if not runs.is_finished(path):
        raise UserError(f"{path} is not a finished run (no {runs.MODEL_DIR}/ and {runs.TRAIN_RESULTS})",
                        hint="finish training first with `ftcli finetune RECIPE`")
    path = path.resolve()
    train = runs.read_json_if_readable(path / runs.TRAIN_RESULTS)
    if not isinstance(train, dict):
        raise UserError(f"{path / runs.TRAIN_RESULTS} is not a JSON object", hint="train the run again")
    recipe_file = path / runs.RECIPE_FILE
    recipe_text = recipe_file.read_text(encoding="utf-8") if recipe_file.is_file() else ""
    try:
        recipe = yaml.safe_load(recipe_text) or {}
    except yaml.YAMLError:
        recipe = {}
    evaluated = runs.read_json_if_readable(path / runs.EVAL_RESULTS)
    return RunFiles(path, recipe_text, recipe if isinstance(recipe, dict) else {}, train, runs.log_history(path),
                    evaluated if isinstance(evaluated, dict) else None)
