"""ftcli sweep: the sweep: section's strictness, a sweep end to end on a tiny model, pruning, and resuming
a sweep killed in the middle of a trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import recipe_problems, repo_rows, write_jsonl
from ftcli.cli import app

optuna = pytest.importorskip("optuna", reason="ftcli sweep needs optuna (pip install 'ftcli[sweep]')")

runner = CliRunner()


def sweep_recipe(model: Path, data: Path, sweep: dict, **train) -> dict:
    return {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 64},
        "lora": {"r": 4, "alpha": 8},
        "train": {"output_dir": "runs/sweep", "max_steps": 4, "batch_size": 8, "learning_rate": 5e-3,
                  "logging_steps": 2, "report_to": ["none"], **train},
        "sweep": sweep,
    }


def write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def pirate(workdir) -> Path:
    return write_jsonl(workdir / "data" / "train.jsonl", repo_rows("pirate", 32))


SPACE = {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "lora.r": {"choices": [2, 4]}}


# --- the section's strictness -------------------------------------------------------------------

def _raw(sweep: dict, **train) -> dict:
    raw = sweep_recipe(Path("models/m"), Path("d.jsonl"), sweep, **train)
    return raw


def test_sweep_keys_are_strict_with_did_you_mean():
    problems = recipe_problems(_raw({"parameters": SPACE, "trails": 3}))
    assert problems == ["sweep.trails: unknown key — did you mean trials?"]
    problems = recipe_problems(_raw({"parameters": {"lora.r": {"choices": [2], "hihg": 3}}}))
    assert problems == ["sweep.parameters.lora.r.hihg: unknown key — did you mean high?"]


def test_a_parameter_must_be_a_recipe_key_of_a_section_the_recipe_has():
    [problem] = recipe_problems(_raw({"parameters": {"train.learnig_rate": {"low": 1e-4, "high": 1e-3}}}))
    assert problem.startswith("sweep.parameters.train.learnig_rate: ") and "did you mean learning_rate?" in problem
    raw = _raw({"parameters": {"lora.r": {"choices": [2, 4]}}})
    del raw["lora"]  # setting lora.r would switch LoRA on
    [problem] = recipe_problems(raw)
    assert "has no lora: section" in problem


def test_ranges_objectives_and_pruning_are_checked():
    [problem] = recipe_problems(_raw({"parameters": {"lora.r": {"low": 16, "high": 4}}}))
    assert problem == "sweep.parameters.lora.r: low (16) is above high (4)"
    [problem] = recipe_problems(_raw({"parameters": SPACE, "objective": "accuracy"}))
    assert "'accuracy' is not an eval metric" in problem and "perplexity" in problem
    [problem] = recipe_problems(_raw({"parameters": SPACE, "pruning": True}))
    assert "sweep.pruning" in problem and "train.eval_strategy" in problem


def test_ints_stay_ints_and_direction_follows_the_objective():
    from ftcli.recipe import parse_recipe

    sweep = parse_recipe(_raw({"parameters": {"lora.r": {"low": 2, "high": 8}}, "objective": "rouge"})).sweep
    assert sweep.parameters["lora.r"].is_int and sweep.direction == "maximize"
    sweep = parse_recipe(_raw({"parameters": SPACE})).sweep
    assert not sweep.parameters["train.learning_rate"].is_int and sweep.direction == "minimize"


def test_a_value_the_recipe_refuses_stops_the_sweep_before_training(workdir, tiny_llama, pirate):
    recipe = write(workdir / "s.yaml", sweep_recipe(tiny_llama, pirate, {"parameters": {
        "lora.r": {"choices": [4, 0]}, "train.lr_scheduler_type": {"choices": ["linear"]}}}))
    result = runner.invoke(app, ["sweep", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "sweep.parameters.lora.r: value 0 fails the recipe: lora.r:" in result.output
    assert not (workdir / "runs" / "sweep" / "trials").exists()


def test_validate_accepts_a_sweep_recipe(workdir, tiny_llama, pirate):
    recipe = write(workdir / "s.yaml", sweep_recipe(tiny_llama, pirate, {"parameters": SPACE}))
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output


def test_finetune_trains_a_sweep_recipe_as_written(workdir, tiny_llama, pirate):
    recipe = write(workdir / "s.yaml", sweep_recipe(tiny_llama, pirate, {"parameters": SPACE}, max_steps=2,
                                                    learning_rate=1e-3))
    result = runner.invoke(app, ["finetune", str(recipe)])
    assert result.exit_code == 0, result.output
    assert "finetune trains the recipe as written" in result.output
    saved = yaml.safe_load((workdir / "runs/sweep/recipe.yaml").read_text())
    assert saved["train"]["learning_rate"] == 1e-3 and saved["lora"]["r"] == 4  # no sampled values


# --- a sweep end to end -------------------------------------------------------------------------

def test_three_trial_sweep_end_to_end(workdir, tiny_llama, pirate):
    recipe = write(workdir / "s.yaml", sweep_recipe(tiny_llama, pirate, {"parameters": SPACE, "trials": 3,
                                                                         "seed": 7}))
    result = runner.invoke(app, ["sweep", str(recipe)])
    assert result.exit_code == 0, result.output
    out = workdir / "runs" / "sweep"
    study = optuna.load_study(study_name="ftcli-sweep", storage=f"sqlite:///{out / 'sweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for t in study.trials:
        run = out / "trials" / f"{t.number + 1:03d}"
        saved = yaml.safe_load((run / "recipe.yaml").read_text())
        assert saved["train"]["learning_rate"] == pytest.approx(t.params["train.learning_rate"])
        assert saved["lora"]["r"] == t.params["lora.r"] and saved["sweep"] is None
        assert json.loads((run / "train_results.json").read_text())["global_step"] == 4
        assert json.loads((run / "eval_results.json").read_text())["tuned"]["loss"] == pytest.approx(t.value)

    # The table: a header, a rule, one row per trial ranked by loss (lowest first).
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "trial", "state", "loss", "train.learning_rate", "lora.r"]
    ranked = sorted(study.trials, key=lambda t: t.value)
    assert [line.split()[1] for line in lines[2:5]] == [f"{t.number + 1:03d}" for t in ranked]

    from ftcli.recipe import load_recipe

    best = load_recipe(out / "best.yaml")
    assert best.sweep is None and best.train.output_dir == str(out / "best")
    assert best.train.learning_rate == pytest.approx(ranked[0].params["train.learning_rate"])
    assert best.lora.r == ranked[0].params["lora.r"]
    summary = json.loads((out / "sweep_results.json").read_text())
    assert summary["best"]["trial"] == ranked[0].number + 1 and len(summary["trials"]) == 3

    png = (out / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    from PIL import Image

    with Image.open(out / "sweep.png") as image:
        assert image.width > 2 * image.height  # three panels side by side
        assert len(set(image.convert("L").getdata())) > 20  # drawn, not blank

    again = runner.invoke(app, ["sweep", str(recipe)])  # a finished sweep: the table again, nothing trained
    assert again.exit_code == 0 and again.stdout == result.stdout
    assert len(optuna.load_study(study_name="ftcli-sweep", storage=f"sqlite:///{out / 'sweep.db'}").trials) == 3


def test_a_trial_whose_loss_goes_nonfinite_fails_and_the_sweep_goes_on(workdir, tiny_llama, pirate):
    from ftcli import load_recipe
    from ftcli.sweeping.study import open_study

    raw = sweep_recipe(tiny_llama, pirate, {"parameters": {"train.learning_rate": {"choices": [1e30, 5e-3]}},
                                            "trials": 2}, max_grad_norm=1e30)
    recipe = write(workdir / "s.yaml", raw)
    loaded = load_recipe(recipe)
    study = open_study(Path(loaded.train.output_dir), loaded.sweep)
    study.enqueue_trial({"train.learning_rate": 1e30})  # the weights overflow: a non-finite loss (exit 3 alone)
    study.enqueue_trial({"train.learning_rate": 5e-3})
    result = runner.invoke(app, ["sweep", str(recipe)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="ftcli-sweep", storage=f"sqlite:///{workdir / 'runs/sweep/sweep.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert "trial 001 failed" in result.output and "loss" in result.output.split("trial 001 failed")[1].splitlines()[0]
    ranked = result.stdout.splitlines()
    assert ranked[2].split()[1:3] == ["002", "complete"] and ranked[3].split()[1:3] == ["001", "fail"]
    assert load_recipe(workdir / "runs/sweep/best.yaml").train.learning_rate == 5e-3


# --- pruning ------------------------------------------------------------------------------------

class _Trial:
    def __init__(self, prune: bool):
        self.prune, self.reported, self.user_attrs = prune, [], {}

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def test_the_pruning_callback_stops_training_when_the_trial_should_prune():
    from transformers import TrainerControl, TrainerState

    from ftcli.sweeping.pruning import PruningCallback

    for prune in (False, True):
        trial, control, state = _Trial(prune), TrainerControl(), TrainerState()
        state.global_step = 6
        PruningCallback(trial, "perplexity").on_evaluate(None, state, control, metrics={"eval_loss": 1.0})
        assert trial.reported == [(6, pytest.approx(2.718281828))]
        assert control.should_training_stop is prune


def test_a_trial_that_trails_the_median_is_pruned(workdir, tiny_llama, pirate):
    from ftcli import load_recipe
    from ftcli.sweeping.study import open_study

    raw = sweep_recipe(tiny_llama, pirate, {"parameters": {"train.learning_rate": {"choices": [1e-2, 1e-9]}},
                                            "trials": 2, "pruning": True, "pruning_startup_trials": 1},
                       max_steps=12, eval_strategy="steps", eval_steps=3)
    recipe = write(workdir / "s.yaml", raw)
    loaded = load_recipe(recipe)
    study = open_study(Path(loaded.train.output_dir), loaded.sweep)
    study.enqueue_trial({"train.learning_rate": 1e-2})  # learns: the median to beat
    study.enqueue_trial({"train.learning_rate": 1e-9})  # learns nothing: trails at its first eval
    result = runner.invoke(app, ["sweep", str(recipe)])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="ftcli-sweep", storage=f"sqlite:///{workdir / 'runs/sweep/sweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    pruned = json.loads((workdir / "runs/sweep/trials/002/train_results.json").read_text())
    assert pruned["global_step"] < 12
    assert result.stdout.splitlines()[3].split()[1:3] == ["002", "pruned"]


# --- resume after a kill ------------------------------------------------------------------------

def _wait_for_checkpoint(process, trial: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted(trial.glob("checkpoint-*/ftcli-complete.json"))
        if done:
            return done[0].parent
        assert process.poll() is None, "the sweep ended before trial 2 saved a checkpoint"
        time.sleep(0.05)
    raise AssertionError(f"no complete checkpoint in {trial} after {timeout}s")


def test_a_killed_sweep_resumes_with_the_same_command(workdir, tiny_llama, pirate):
    raw = sweep_recipe(tiny_llama, pirate, {"parameters": SPACE, "trials": 3}, max_steps=24, save_steps=4)
    recipe = write(workdir / "s.yaml", raw)
    out = workdir / "runs" / "sweep"
    command = [sys.executable, "-m", "ftcli", "sweep", str(recipe)]
    env = {**os.environ, "FTCLI_PROGRESS": "off"}
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        checkpoint = _wait_for_checkpoint(process, out / "trials" / "002")
        process.send_signal(signal.SIGKILL)  # no handler runs: as a power cut or an OOM kill
    finally:
        process.wait(timeout=60)
    assert not (out / "trials" / "002" / "train_results.json").exists(), "trial 2 finished before the kill"
    first = out / "trials" / "001"
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    rerun = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr

    study = optuna.load_study(study_name="ftcli-sweep", storage=f"sqlite:///{out / 'sweep.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == before  # trial 1 not re-run
    second = json.loads((out / "trials" / "002" / "train_results.json").read_text())
    step = int(checkpoint.name.removeprefix("checkpoint-"))
    assert second["resumed_from"] is not None and int(second["resumed_from"].removeprefix("checkpoint-")) >= step
    assert second["global_step"] == 24
    assert "trial 002 of 003 (continuing)" in rerun.stderr
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["001", "002", "003"]


def test_without_optuna_the_sweep_says_what_to_install(monkeypatch, workdir):
    from ftcli.errors import UserError
    from ftcli.sweeping.study import import_optuna

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    with pytest.raises(UserError) as caught:
        import_optuna()
    assert "pip install 'ftcli[sweep]'" in caught.value.render()
