"""The search space: each `sweep.parameters` entry as an Optuna distribution, and a trial's recipe (the
recipe with its sampled values applied the way `--set` applies overrides, then validated as usual)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ftcli.errors import RecipeError
from ftcli.recipe import Recipe, apply_overrides, parse_recipe, resolve_paths
from ftcli.recipe.sweep_section import SweepParameter

_SCALARS = (type(None), bool, int, float, str)


def _scalar_choices(p: SweepParameter) -> bool:
    # Optuna stores categorical values as they are only for scalars; lists and maps travel as JSON text.
    return all(isinstance(c, _SCALARS) for c in p.choices)


def distributions(parameters: dict[str, SweepParameter]) -> dict:
    """Optuna distributions, keyed by the dotted recipe key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found = {}
    for key, p in parameters.items():
        if p.choices is not None:
            choices = p.choices if _scalar_choices(p) else [json.dumps(c) for c in p.choices]
            found[key] = CategoricalDistribution(choices)
        elif p.is_int:
            found[key] = IntDistribution(p.low, p.high, log=p.log)
        else:
            found[key] = FloatDistribution(float(p.low), float(p.high), log=p.log)
    return found


def recipe_values(parameters: dict[str, SweepParameter], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params as recipe values (JSON-coded choices decoded)."""
    return {key: json.loads(params[key]) if parameters[key].choices is not None and not _scalar_choices(parameters[key])
            else params[key] for key in parameters}


def base_raw(recipe: Recipe) -> dict:
    """The resolved recipe as a mapping without its sweep: section (paths absolute, defaults written out)."""
    raw = recipe.model_dump(mode="json")
    raw.pop("sweep", None)
    return raw


def trial_recipe(base: dict, values: dict[str, Any], output_dir: Path, objective: str | None = None,
                 source: str = "sweep") -> Recipe:
    """The recipe a trial runs: `values` set as `--set key=value` would set them, output_dir its own, and the
    objective among eval.metrics so that `ftcli eval` scores it. Raises RecipeError as any recipe would."""
    raw = copy.deepcopy(base)
    overrides = [f"{key}={json.dumps(value)}" for key, value in values.items()]  # JSON is YAML: --set's parser reads it
    overrides.append(f"train.output_dir={json.dumps(str(output_dir))}")
    raw = apply_overrides(raw, overrides)
    metrics = (raw.get("eval") or {}).get("metrics")
    if objective and isinstance(metrics, list) and objective not in metrics:
        raw["eval"]["metrics"] = metrics + [objective]
    return resolve_paths(parse_recipe(raw, source), source=source)


def check_values(base: dict, parameters: dict[str, SweepParameter], output_dir: Path, source: str) -> None:
    """Every choice, and both ends of every range, through the recipe's own validation before any trial
    trains: a value the recipe refuses is a problem of the sweep, found in seconds."""
    problems = []
    for key, p in parameters.items():
        candidates = p.choices if p.choices is not None else [p.low, p.high]
        for value in candidates:
            try:
                trial_recipe(base, {key: value}, output_dir)
            except RecipeError as exc:
                problems += [f"sweep.parameters.{key}: value {value!r} fails the recipe: {problem}"
                             for problem in exc.problems]
    if problems:
        raise RecipeError(source, problems)
