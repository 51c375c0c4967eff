"""Recipes that editors check and users start from: `ftcli schema --json`, `ftcli init`, `ftcli recipes`,
and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftcli.cli import app
from ftcli.recipe import parse_recipe
from ftcli.recipe.starters import STARTERS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "recipes").rglob("*.yaml"))
runner = CliRunner()

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) validates recipes against the "
                                                      "JSON Schema")


@pytest.fixture(scope="module")
def validator():
    result = runner.invoke(app, ["schema", "--json"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)  # a well-formed schema, in the dialect it names
    assert schema["$schema"].endswith("2020-12/schema")
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, raw: dict) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw))


# ---------------------------------------------------------------- ftcli schema --json


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_shipped_recipe_satisfies_the_json_schema(validator, path):
    assert _errors(validator, yaml.safe_load(path.read_text())) == []


def test_a_typo_fails_the_json_schema_where_it_is(validator):
    raw = yaml.safe_load((REPO / "recipes/demo-smollm2-lora.yaml").read_text())
    raw["data"]["max_lenght"] = 128
    raw["train"]["learning_rate"] = "fast"
    raw["task"] = "causal_lm"
    errors = _errors(validator, raw)
    assert any(e.startswith("data:") and "max_lenght" in e for e in errors), errors
    assert any(e.startswith("train.learning_rate:") for e in errors), errors
    assert any(e.startswith("task:") for e in errors), errors
    assert len(errors) == 3, errors  # nothing else in the shipped recipe is flagged


def test_the_json_schema_carries_descriptions_and_defaults(validator):
    schema = validator.schema
    train = schema["$defs"]["TrainSection"]["properties"]
    assert train["learning_rate"]["default"] == 0.0002
    assert "Overrides epochs" in train["max_steps"]["description"]
    assert schema["$defs"]["DataSection"]["additionalProperties"] is False  # strict, like load_recipe
    assert "causal-lm" in json.dumps(schema["properties"]["task"])


# ---------------------------------------------------------------- ftcli init


@pytest.mark.parametrize("task", STARTERS)
def test_every_starter_validates_as_written(validator, task):
    result = runner.invoke(app, ["init", task])
    assert result.exit_code == 0, result.output
    raw = yaml.safe_load(result.stdout)
    recipe = parse_recipe(raw, f"starter {task}")
    assert recipe.task == ("causal-lm" if task == "dpo" else task)
    assert (recipe.preference is not None) == (task == "dpo")
    assert _errors(validator, raw) == []
    assert result.stdout.startswith("# yaml-language-server: $schema=")
    data = REPO / raw["data"]["train"]
    assert data.is_file(), f"the starter names data the repo does not ship: {data}"


def test_init_names_the_model_given_even_with_awkward_characters():
    path = "/tmp/my models/tiny: llama #1"
    result = runner.invoke(app, ["init", "causal-lm", "--model", path])
    assert result.exit_code == 0, result.output
    assert parse_recipe(yaml.safe_load(result.stdout)).model.name_or_path == path


_TINY_FOR = {"causal-lm": "tiny_llama", "dpo": "tiny_llama", "reward-model": "tiny_llama",
             "sequence-classification": "tiny_bert", "masked-lm": "tiny_bert", "seq2seq": "tiny_t5"}


@pytest.mark.parametrize("task", STARTERS)
def test_init_writes_a_file_that_ftcli_validate_accepts(task, request, monkeypatch, tmp_path):
    model = request.getfixturevalue(_TINY_FOR[task])
    monkeypatch.chdir(REPO)  # the starter's data paths are the checkout's example data
    out = tmp_path / "starter.yaml"
    result = runner.invoke(app, ["init", task, "--model", str(model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    checked = runner.invoke(app, ["validate", str(out)])  # data files, fields, model path, template
    assert checked.exit_code == 0, checked.output
    assert ("causal-lm" if task == "dpo" else task) in checked.stdout


def test_init_never_overwrites_and_suggests_a_task(tmp_path):
    out = tmp_path / "mine.yaml"
    out.write_text("task: mine\n")
    result = runner.invoke(app, ["init", "causal-lm", "-o", str(out)])
    assert result.exit_code == 2
    assert "exists" in result.output
    assert out.read_text() == "task: mine\n"
    wrong = runner.invoke(app, ["init", "cuasal-lm"])
    assert wrong.exit_code == 2
    assert "did you mean causal-lm?" in wrong.output


# ---------------------------------------------------------------- ftcli recipes


def test_recipes_lists_every_shipped_recipe_with_its_task_and_purpose(monkeypatch):
    monkeypatch.chdir(REPO)
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(SHIPPED)
    for path, line in zip(SHIPPED, lines):
        shown, task, *summary = line.split(None, 2)
        assert shown == str(path.relative_to(REPO))
        assert task == yaml.safe_load(path.read_text())["task"]
        assert summary and len(summary[0]) > 20, f"{shown} opens with no comment saying what it does"


# ---------------------------------------------------------------- shell completion


def _complete(words: str, index: int) -> list[str]:
    env = {**os.environ, "_FTCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(index)}
    done = subprocess.run([sys.executable, "-m", "ftcli"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_completes_commands_and_starter_names():
    assert _complete("ftcli fin", 1) == ["finetune"]
    assert _complete("ftcli init ", 2) == list(STARTERS)
    help_text = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in help_text
