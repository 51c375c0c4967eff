"""The recipe loaded from YAML: read strictly, overridden with --set, validated against
`ftcli.schema`, paths resolved, and saved back.

Every problem is reported at once as a dotted path, and a misspelled key suggests the closest valid
one. The schema's names are re-exported here, so `from ftcli.recipe import Recipe` keeps working.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from collections.abc import Hashable
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ftcli import runs
from ftcli.architectures import from_config_problems
from ftcli.errors import RecipeError, UserError
from ftcli.schema import (
    BEST_MODEL_METRICS,
    DEFAULT_METRICS,
    GENERATION_METRICS,
    TASK_METRICS,
    TASKS,
    TEMPLATE_NAMES,
    DataInput,
    DataSection,
    DataSource,
    EvalSection,
    FewShotExample,
    GenerateSection,
    LoraSection,
    ModelSection,
    Recipe,
    Section,
    Task,
    TokenizerSection,
    TokenizerTraining,
    TrainSection,
    _nested_model,
)
from ftcli.schema_reference import reference_yaml

__all__ = [
    # the schema (ftcli.schema)
    "TASKS", "Task", "GENERATION_METRICS", "TASK_METRICS", "BEST_MODEL_METRICS", "DEFAULT_METRICS",
    "TEMPLATE_NAMES", "Section", "ModelSection", "TokenizerSection", "TokenizerTraining", "DataInput",
    "DataSource", "DataSection", "LoraSection", "TrainSection", "EvalSection",
    "FewShotExample", "GenerateSection", "Recipe", "reference_yaml",
    # loading
    "parse_recipe", "read_yaml", "apply_overrides", "resolve_paths", "load_recipe", "dump_recipe",
    "save_recipe",
]


def _metric_problems(raw: dict) -> list[str]:
    """Metric names depend on the task, so they are checked beside the schema (and always run,
    even when other fields fail, so that every problem is reported at once)."""
    task, section, train = raw.get("task"), raw.get("eval"), raw.get("train")
    if not isinstance(task, str) or task not in TASK_METRICS:
        return []
    allowed = TASK_METRICS[task]
    names = section.get("metrics") if isinstance(section, dict) else None
    problems = [f"eval.metrics: '{n}' is not a {task} metric{_suggest(str(n), allowed)} "
                f"(choose from {', '.join(allowed)})" for n in names or [] if n not in allowed] \
        if isinstance(names, list) else []
    best, choices = train.get("metric_for_best_model") if isinstance(train, dict) else None, BEST_MODEL_METRICS[task]
    if isinstance(best, str) and best not in choices:
        problems.append(f"train.metric_for_best_model: '{best}' cannot select a {task} model"
                        f"{_suggest(best, choices)} (choose from {', '.join(choices)})")
    return problems


def _suggest(word: str, choices) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    close = close or [c for c in choices if len(word) >= 3 and c.startswith(word)][:1]
    return f" — did you mean {close[0]}?" if close else ""


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
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections
            continue
        field = model.model_fields.get(part)
        model = _nested_model(field.annotation) if field else None
        if model is None:
            return None
    return model


def _format_problem(error: dict) -> str:
    loc = error["loc"]
    path = ".".join(str(p) for p in loc) or "(recipe)"
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        hint = _suggest(str(loc[-1]), owner.model_fields) if owner else ""
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


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; raise RecipeError listing every problem."""
    if not isinstance(raw, dict):
        name = {"list": "a list", "str": "a string", "int": "a number", "float": "a number",
                "bool": "a boolean"}.get(type(raw).__name__, type(raw).__name__)
        kind = "empty" if raw is None else name
        raise RecipeError(source, [f"(recipe): the top level must be a mapping of keys, but it is {kind}"])
    problems = _metric_problems(raw) + from_config_problems(raw)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": _clean_loc(e["loc"], raw)} for e in exc.errors()]
        # A union reports each member's failure; keep only the most specific path of each.
        locs = [e["loc"] for e in errors]
        specific = [e for e in errors if not any(len(o) > len(e["loc"]) and o[:len(e["loc"])] == e["loc"]
                                                 for o in locs)]
        problems = [_format_problem(e) for e in _one_per_union(specific)] + problems
    if problems:
        raise RecipeError(source, problems)
    return recipe


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error (PyYAML keeps the last one,
    so a recipe with two `train:` sections would silently lose the first)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # anything else: PyYAML's own error
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    break  # PyYAML reports unhashable keys itself
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: YAML syntax error at {where}{problem}") from None
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply to be a recipe") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # PyYAML's tag constructors (`!!int x`, `!!timestamp y`) raise plain Python errors.
        raise UserError(f"{path}: YAML value does not fit its tag: {type(exc).__name__}: {exc}") from None


def _parse_value(text: str) -> Any:
    """A --set value as YAML (numbers, booleans, null, [lists], {maps}); anything else is a string,
    so `--set generate.system_prompt=Note: be brief` keeps its colon."""
    if not text.strip():
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--set a.b.c=VALUE` overrides; VALUE is parsed as YAML and type-checked with the rest."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.learning_rate=1e-4")
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return raw


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or Path(value).suffix != "" or os.path.exists(value)


def _absolute(value: str | None, base: Path, always: bool = False) -> str | None:
    """Make a local path absolute (so a saved recipe works from any directory); leave hub ids alone."""
    if value is None or not (always or _looks_like_path(value) or (base / value).exists()):
        return value
    return str((base / Path(value).expanduser()).resolve())


def _run_model(value: str | None, gguf_file: str | None = None) -> str | None:
    """A finished ftcli run named as a model or tokenizer stands for its model/ folder, so the run's
    saved recipe names the exact model it started from."""
    if value is None:
        return value
    path = Path(value)
    if (path.is_dir() and not (path / "config.json").is_file() and not (gguf_file and (path / gguf_file).is_file())
            and runs.is_finished(path)):
        return str(path / runs.MODEL_DIR)
    return value


def _data_path_fields(section, key: str) -> list[tuple]:
    """(owner, attribute, dotted key) of every local path inside data.train / data.eval."""
    value = getattr(section, key)
    items = value if isinstance(value, list) else [value]
    found = []
    for i, item in enumerate(items):
        where = f"data.{key}" + (f".{i}" if isinstance(value, list) else "")
        if isinstance(item, str):
            found.append((value if isinstance(value, list) else section, i if isinstance(value, list) else key, where))
        elif isinstance(item, DataSource):
            found += [(item, name, f"{where}.{name}") for name in ("path", "source", "target")]
    return found


def _json_config_problem(path: str, key: str) -> str | None:
    """A DeepSpeed/FSDP config file must exist and be a JSON object; found now, not on every rank
    minutes into a launch."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{key}: file not found: {path}"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{key}: cannot read {path} ({exc})"
    except ValueError as exc:
        return f"{key}: {path} is not valid JSON ({exc})"
    return None if isinstance(config, dict) else f"{key}: {path} must hold a JSON object"


def resolve_paths(recipe: Recipe, base: Path | None = None, source: str = "recipe") -> Recipe:
    base = base or Path.cwd()
    fields = [(recipe.model, "name_or_path", "model.name_or_path", False),
              (recipe.train, "output_dir", "train.output_dir", True)]
    if recipe.tokenizer is not None:
        fields.append((recipe.tokenizer, "name_or_path", "tokenizer.name_or_path", False))
    fields += [(owner, name, key, False) for data_key in ("train", "eval")
               for owner, name, key in _data_path_fields(recipe.data, data_key)]
    config_files = [(recipe.distributed, name, f"distributed.{name}", True) for name in ("deepspeed", "fsdp_config")
                    if recipe.distributed is not None and isinstance(getattr(recipe.distributed, name), str)]
    fields += config_files
    problems = []
    for section, name, key, always in fields:
        value = section[name] if isinstance(section, list) else getattr(section, name)
        try:
            resolved = _absolute(value, base, always)
            if key in ("model.name_or_path", "tokenizer.name_or_path"):
                resolved = _run_model(resolved, recipe.model.gguf_file if key.startswith("model") else None)
            if isinstance(section, list):
                section[name] = resolved
            else:
                setattr(section, name, resolved)
        except (ValueError, RuntimeError, OSError) as exc:  # NUL bytes, ~nouser, names too long
            problems.append(f"{key}: not a usable path ({exc}): {value!r}")
    problems += [p for section, name, key, _ in config_files if (p := _json_config_problem(getattr(section, name), key))]
    if problems:
        raise RecipeError(source, problems)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override, validate and resolve a recipe file. Relative paths resolve against the cwd."""
    raw = read_yaml(path)
    if overrides:
        if not isinstance(raw, dict):
            parse_recipe(raw, str(path))  # raises the top-level-shape error
        raw = apply_overrides(raw, overrides)
    return resolve_paths(parse_recipe(raw, str(path)), source=str(path))


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(dump_recipe(recipe), encoding="utf-8")
