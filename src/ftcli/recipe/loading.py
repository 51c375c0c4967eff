"""The recipe loaded from YAML: read strictly, overridden with --set, validated against the schema,
paths resolved, and saved back. Every problem is reported at once as a dotted path.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ftcli.errors import RecipeError, UserError
from ftcli.recipe.from_config import from_config_problems
from ftcli.recipe.paths import resolve_paths
from ftcli.recipe.problems import _clean_loc, _format_problem, _metric_problems, _one_per_union
from ftcli.recipe.schema import Recipe


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
