"""The command line: help, `validate`, exit codes, error rendering, FTCLI_DEBUG, and light imports."""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftcli.cli import app
from ftcli.errors import RecipeError, UserError

COMMANDS = ["finetune", "eval", "generate", "validate", "import-gguf", "schema", "init", "recipes", "sweep", "report",
            "attention"]


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.delenv("FTCLI_DEBUG", raising=False)
    return CliRunner()


def stderr_of(result) -> str:
    """stderr alone (recent Click keeps it separate; result.output mixes both streams)."""
    try:
        return result.stderr
    except ValueError:  # an old Click that mixed stderr into stdout
        return result.output


@pytest.fixture
def project(tmp_path, monkeypatch, tiny_llama):
    """A cwd with SFT data, plain-text data, a model dir (the tiny Llama), and no runs."""
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sft.jsonl").write_text(
        "".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(20)), encoding="utf-8")
    (tmp_path / "text.jsonl").write_text(
        "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(10)), encoding="utf-8")
    shutil.copytree(tiny_llama, tmp_path / "model")
    return tmp_path


def recipe_file(folder: Path, name: str = "r.yaml", *, train: str = "sft.jsonl", model: str = "model",
                extra: str = "") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(f"""\
        task: causal-lm
        model:
          name_or_path: {model}
        data:
          train: {train}
        train:
          output_dir: runs/test
        """) + extra, encoding="utf-8")
    return path


# ---------------------------------------------------------------- help


def test_app_help(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.stdout


def test_no_args_shows_help(runner):
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(runner, command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout and command in result.stdout


def test_unknown_command_is_a_usage_error(runner):
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2


# ---------------------------------------------------------------- validate


def test_validate_good_sft_recipe(runner, project):
    path = recipe_file(project)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout
    assert "SFT" in result.stdout
    assert "18 train rows, 2 eval rows" in result.stdout
    assert str(project / "model") in result.stdout
    assert str(project / "runs" / "test") in result.stdout
    assert "LoRA" not in result.stdout


def test_validate_plain_text_recipe_with_lora(runner, project):
    path = recipe_file(project, train="text.jsonl", extra="lora:\n  r: 4\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "plain-text" in result.stdout and "SFT" not in result.stdout
    assert "9 train rows, 1 eval rows" in result.stdout
    assert "+ LoRA" in result.stdout


def test_validate_reports_dropped_rows(runner, project):
    with (project / "sft.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"prompt": "q", "response": ""}) + "\n")
    result = runner.invoke(app, ["validate", str(recipe_file(project))])
    assert result.exit_code == 0, result.output
    assert "dropped 1 row (1 incomplete)" in result.stdout


def test_validate_set_override(runner, project):
    path = recipe_file(project)
    result = runner.invoke(app, ["validate", str(path), "--set", "data.eval_fraction=0.5",
                                 "--set", "train.output_dir=elsewhere"])
    assert result.exit_code == 0, result.output
    assert "10 train rows, 10 eval rows" in result.stdout
    assert str(project / "elsewhere") in result.stdout


def test_validate_misspelled_key(runner, project):
    path = recipe_file(project, extra="  batchsize: 4\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "train.batchsize: unknown key — did you mean batch_size?" in stderr_of(result)
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_validate_lists_every_problem(runner, project):
    path = recipe_file(project, extra="  batch_size: -1\n  learning_rate: fast\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    err = stderr_of(result)
    assert "2 problems" in err and "train.batch_size" in err and "train.learning_rate" in err


def test_validate_bad_set_value(runner, project):
    result = runner.invoke(app, ["validate", str(recipe_file(project)), "--set", "train.batch_size=abc"])
    assert result.exit_code == 2
    assert "train.batch_size" in stderr_of(result)
    assert "Traceback" not in result.output


def test_validate_malformed_set(runner, project):
    result = runner.invoke(app, ["validate", str(recipe_file(project)), "--set", "foo"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in stderr_of(result)


def test_validate_yaml_syntax_error(runner, project):
    path = project / "bad.yaml"
    path.write_text("task: causal-lm\nmodel:\n  name_or_path: x\n data: [\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "line 4, column 2" in stderr_of(result)
    assert "Traceback" not in result.output


def test_validate_missing_recipe(runner, project):
    result = runner.invoke(app, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert "recipe file not found" in stderr_of(result)


def test_validate_missing_data_file(runner, project):
    result = runner.invoke(app, ["validate", str(recipe_file(project, train="missing.jsonl"))])
    assert result.exit_code == 2
    assert "data file not found" in stderr_of(result) and "missing.jsonl" in stderr_of(result)
    assert "Traceback" not in result.output


def test_validate_data_without_needed_fields(runner, project):
    (project / "other.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(recipe_file(project, train="other.jsonl"))])
    assert result.exit_code == 2
    assert "the data has: question, answer" in stderr_of(result)


@pytest.mark.parametrize("model", ["./no-such-model", "/definitely/not/a/model/dir"])
def test_validate_missing_model_path(runner, project, model):
    result = runner.invoke(app, ["validate", str(recipe_file(project, model=model))])
    assert result.exit_code == 2
    err = stderr_of(result)
    assert "model not found" in err
    assert "hint:" in err
    assert "Traceback" not in result.output


def test_validate_model_dir_without_config(runner, project):
    (project / "empty").mkdir()
    result = runner.invoke(app, ["validate", str(recipe_file(project, model="empty"))])
    assert result.exit_code == 2
    assert "no config.json" in stderr_of(result) and "hint:" in stderr_of(result)


# ---------------------------------------------------------------- eval / generate without a run


def test_eval_without_a_run(runner, project):
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2, result.output
    assert "no finished run found" in stderr_of(result)
    assert "Traceback" not in result.output


def test_eval_named_run_that_does_not_exist(runner, project):
    result = runner.invoke(app, ["eval", "runs/nothing-here"])
    assert result.exit_code == 2, result.output
    assert "run not found" in stderr_of(result)


def test_generate_without_a_run(runner, project):
    result = runner.invoke(app, ["generate", "hello"])
    assert result.exit_code == 2, result.output
    assert "no finished run found" in stderr_of(result)
    assert result.stdout == ""


def test_generate_run_and_recipe_together(runner, project):
    result = runner.invoke(app, ["generate", "hello", "--run", "a", "--recipe", "b"])
    assert result.exit_code == 2
    assert "not both" in stderr_of(result)


# ---------------------------------------------------------------- FTCLI_DEBUG


def test_debug_env_raises_user_errors(runner, project):
    path = recipe_file(project, extra="  batchsize: 4\n")
    result = runner.invoke(app, ["validate", str(path)], env={"FTCLI_DEBUG": "1"})
    assert isinstance(result.exception, RecipeError)
    assert result.exit_code != 0 and result.exit_code != 2
    assert "batchsize" in str(result.exception)


def test_debug_zero_is_off(runner, project):
    result = runner.invoke(app, ["eval"], env={"FTCLI_DEBUG": "0"})
    assert result.exit_code == 2
    assert not isinstance(result.exception, UserError)


# ---------------------------------------------------------------- light imports, python -m


HEAVY = ("torch", "transformers", "datasets", "fastapi", "uvicorn", "optuna", "lm_eval", "matplotlib")


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["generate", "--help"], ["serve", "--help"],
                                  ["sweep", "--help"], ["report", "--help"], ["attention", "--help"],
                                  ["eval", "--help"], ["schema"], ["init", "causal-lm"], ["recipes"]])
def test_help_does_not_import_heavy_libraries(argv):
    code = textwrap.dedent(f"""\
        import sys
        from ftcli.cli import app
        try:
            app({argv!r}, prog_name="ftcli", standalone_mode=False)
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout or "--help" not in argv  # schema, init, recipes: light commands themselves
    assert "HEAVY=\n" in proc.stdout, proc.stdout


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "ftcli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ftcli" in proc.stdout and "validate" in proc.stdout


def test_python_dash_m_user_error_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ftcli", "validate", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "FTCLI_DEBUG": ""})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: recipe file not found")
    assert proc.stdout == ""
