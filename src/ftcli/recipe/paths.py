"""A recipe's local paths made absolute (so a saved recipe works from any directory), a finished run
named as a model standing for its model/ folder, and DeepSpeed/FSDP config files read as the recipe
loads. Hub ids are left as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftcli import runs
from ftcli.errors import RecipeError
from ftcli.io import is_local_path
from ftcli.recipe.schema import DataSource, Recipe


def _absolute(value: str | None, base: Path, always: bool = False) -> str | None:
    """Make a local path absolute (so a saved recipe works from any directory); leave hub ids alone."""
    if value is None or not (always or is_local_path(value) or (base / value).exists()):
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
