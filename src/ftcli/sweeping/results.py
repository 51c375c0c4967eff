"""What a sweep leaves behind: the ranked table, sweep_results.json, and best.yaml (the recipe with the
best trial's values, ready for `ftcli finetune`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.evaluation.reports import table
from ftcli.io import write_json
from ftcli.recipe import save_recipe
from ftcli.sweeping.space import trial_recipe

RESULTS_FILE = "sweep_results.json"
BEST_FILE = "best.yaml"
BEST_DIR = "best"  # where best.yaml trains
_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3}


@dataclass
class TrialRow:
    trial: int  # 1-based, as its folder trials/NNN
    state: str
    value: float | None
    params: dict[str, Any]
    run_dir: str


@dataclass
class SweepResult:
    sweep_dir: Path
    objective: str
    direction: str
    trials: list[TrialRow]  # ranked: complete by objective, then pruned, failed
    best: TrialRow | None
    best_yaml: Path | None = None
    plot: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        return ranked_table(self)


def rows(study, values, trial_dir) -> list[TrialRow]:
    """The study's trials as rows, ranked. `values` turns Optuna params into recipe values."""
    minimize = study.direction.name == "MINIMIZE"
    found = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue
        value = t.value if t.state.name == "COMPLETE" else (t.intermediate_values[max(t.intermediate_values)]
                                                            if t.intermediate_values else None)
        found.append(TrialRow(t.number + 1, t.state.name, value, values(t.params), str(trial_dir(t.number))))

    def rank(row: TrialRow):
        known = row.value is not None and math.isfinite(row.value)
        score = (row.value if minimize else -row.value) if known else math.inf
        return _ORDER.get(row.state, 4), score, row.trial

    return sorted(found, key=rank)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def ranked_table(result: SweepResult) -> str:
    keys = list(result.trials[0].params) if result.trials else []
    head = ["rank", "trial", "state", result.objective] + keys
    body = [[str(i), f"{r.trial:03d}", r.state.lower(), _cell(r.value)] + [_cell(r.params.get(k)) for k in keys]
            for i, r in enumerate(result.trials, 1)]
    arrow = "lower" if result.direction == "minimize" else "higher"
    return table(head, body) + f"\n({result.objective}: {arrow} is better)"


def write_best(sweep_dir: Path, base: dict, best: TrialRow) -> Path:
    """best.yaml: the recipe as written with the best trial's values, no sweep:, training into best/."""
    recipe = trial_recipe(base, best.params, sweep_dir / BEST_DIR, source=BEST_FILE)
    path = sweep_dir / BEST_FILE
    save_recipe(recipe, path)
    return path


def write_results(result: SweepResult) -> Path:
    path = result.sweep_dir / RESULTS_FILE
    write_json(path, {"objective": result.objective, "direction": result.direction,
                      "best": _as_dict(result.best) if result.best else None,
                      "best_yaml": str(result.best_yaml) if result.best_yaml else None,
                      "plot": str(result.plot) if result.plot else None,
                      "trials": [_as_dict(r) for r in result.trials]})
    return path


def _as_dict(row: TrialRow) -> dict:
    value = row.value if row.value is None or math.isfinite(row.value) else None
    return {"trial": row.trial, "state": row.state, "value": value, "params": row.params, "run_dir": row.run_dir}
