"""Recipe problems as users read them: pydantic's errors turned into `dotted.path: message` lines
(one per key, did-you-mean for unknown keys), plus the checks that depend on the task (metric names).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ftcli.errors import suggest
from ftcli.recipe.preference_section import PREFERENCE_METRICS
from ftcli.recipe.schema import BEST_MODEL_METRICS, TASK_METRICS, Recipe, Section, _nested_model


def _metric_problems(raw: dict) -> list[str]:
    """Metric names depend on the task, so they are checked beside the schema (and always run,
    even when other fields fail, so that every problem is reported at once)."""
    task, section, train = raw.get("task"), raw.get("eval"), raw.get("train")
    if not isinstance(task, str) or task not in TASK_METRICS:
        return []
    allowed = TASK_METRICS[task]
    if isinstance(raw.get("preference"), dict):
        task, allowed = "preference", PREFERENCE_METRICS
    names = section.get("metrics") if isinstance(section, dict) else None
    problems = [f"eval.metrics: '{n}' is not a {task} metric{suggest(str(n), allowed)} "
                f"(choose from {', '.join(allowed)})" for n in names or [] if n not in allowed] \
        if isinstance(names, list) else []
    best = train.get("metric_for_best_model") if isinstance(train, dict) else None
    choices = ("loss",) if task == "preference" else BEST_MODEL_METRICS[task]
    if isinstance(best, str) and best not in choices:
        problems.append(f"train.metric_for_best_model: '{best}' cannot select a {task} model"
                        f"{suggest(best, choices)} (choose from {', '.join(choices)})")
    return problems


_UNION_TAGS = {"str", "int", "float", "bool", "dict"} | {cls.__name__ for cls in Section.__subclasses__()}


def _clean_loc(loc: tuple, raw: Any) -> tuple:
    # pydantic puts a union member's type in the path (target_modules.list[str].0, data.train.DataSource.path):
    # drop it. Walk the input alongside, so that a user's own key that looks like a tag ("[", "str") stays.
    kept, here = [], raw
    for part in loc:
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
        elif isinstance(part, str) and (part in _UNION_TAGS or "[" in part):
            continue
        else:
            here = None  # past the input (a missing key): keep the rest as pydantic named it
        kept.append(part)
    return tuple(kept)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class that owns the key at `loc` (None if the path leaves the schema)."""
    model: type[BaseModel] | None = Recipe
    mapping = False
    for part in loc[:-1]:
        if isinstance(part, int) or mapping:  # an item of a list of sections, a key of a mapping of them
            mapping = False
            continue
        field = model.model_fields.get(part)
        model = _nested_model(field.annotation) if field else None
        # sweep.parameters maps the user's own names to sections: the next part is such a name.
        mapping = field is not None and getattr(field.annotation, "__origin__", None) is dict
        if model is None:
            return None
    return model


def _format_problem(error: dict) -> str:
    loc = error["loc"]
    path = ".".join(str(p) for p in loc) or "(recipe)"
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        hint = suggest(str(loc[-1]), owner.model_fields) if owner else ""
        return f"{path}: unknown key{hint}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "value_error":  # our validators name their keys themselves when the path is the recipe
        return f"{error['ctx']['error']}" if not loc else f"{path}: {error['ctx']['error']}"
    got = error.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}{shown}"


def _one_per_union(errors: list[dict]) -> list[dict]:
    """One problem per key where several union members failed at the same place: our own check's
    message if one ran (the input had the right shape), else the members' expectations joined."""
    by_loc: dict[tuple, list[dict]] = {}
    for e in errors:
        by_loc.setdefault(e["loc"], []).append(e)
    merged = []
    for loc, group in by_loc.items():
        ours = [e for e in group if e["type"] == "value_error"]
        if ours or len(group) == 1:
            merged += ours or group
            continue
        expected = " or ".join(dict.fromkeys(e["msg"].removeprefix("Input should be ") for e in group))
        merged.append({**group[0], "msg": f"Input should be {expected}"})
    return merged
