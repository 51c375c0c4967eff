"""No lost work: a killed or interrupted run resumes to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import repo_rows, write_jsonl
from ftcli.training.checkpoints import IN_PROGRESS, MARKER

MAX_STEPS = 160


def recipe_file(tmp_path: Path, model: Path, data: Path, output_dir: Path, **train) -> Path:
    recipe = {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0, "max_length": 64},
        # LoRA with dropout: resuming must restore the RNG as well as weights, optimizer and data order.
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "train": {"output_dir": str(output_dir), "max_steps": MAX_STEPS, "batch_size": 4, "learning_rate": 1e-2,
                  "save_steps": 20, "save_total_limit": 3, "logging_steps": 20, **train},
    }
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def start(recipe: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ftcli", "finetune", str(recipe), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(run_dir.glob(f"checkpoint-*/{MARKER}")):
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{finish(process)[1][-3000:]}")
        time.sleep(0.01)
    process.kill()
    pytest.fail("no checkpoint within the timeout")


def kill_after_first_checkpoint(recipe: Path, run_dir: Path) -> None:
    """Start a run and SIGKILL it as soon as one checkpoint is complete."""
    process = start(recipe)
    wait_for_checkpoint(process, run_dir)
    process.send_signal(signal.SIGKILL)
    process.wait()


def load_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_weights(a), load_weights(b)
    assert left.keys() == right.keys()
    worst = max((left[k] - right[k]).abs().max().item() for k in left)
    print(f"max abs weight difference after resume: {worst:.3g}")
    assert worst <= 1e-5, f"max abs difference {worst}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_llama):
    """One uninterrupted run; every interrupted run must end with its weights."""
    tmp = tmp_path_factory.mktemp("resume")
    data = write_jsonl(tmp / "train.jsonl", repo_rows("pirate", 48))
    run_dir = tmp / "reference"
    code, output = finish(start(recipe_file(tmp, tiny_llama, data, run_dir)))
    assert code == 0, output[-3000:]
    return data, run_dir


def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path, tiny_llama, reference):
    data, reference_dir = reference
    run_dir = tmp_path / "killed"
    recipe = recipe_file(tmp_path, tiny_llama, data, run_dir)

    kill_after_first_checkpoint(recipe, run_dir)
    assert not (run_dir / "model").exists(), "the run finished before it could be killed"

    code, output = finish(start(recipe))
    assert code == 0, output[-3000:]
    assert "resuming from checkpoint-" in output
    assert_same_weights(reference_dir, run_dir)


def test_sigint_saves_a_checkpoint_exits_130_and_resumes_exactly(tmp_path, tiny_llama, reference):
    data, reference_dir = reference
    run_dir = tmp_path / "interrupted"
    recipe = recipe_file(tmp_path, tiny_llama, data, run_dir)

    process = start(recipe)
    wait_for_checkpoint(process, run_dir)
    process.send_signal(signal.SIGINT)
    code, output = finish(process)
    assert code == 130, output[-3000:]
    assert "run the same `ftcli finetune` command again" in output
    assert "Traceback" not in output
    stopped_at = max(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    assert stopped_at < MAX_STEPS and (run_dir / f"checkpoint-{stopped_at}" / MARKER).is_file()
    assert not (run_dir / "model").exists()

    code, output = finish(start(recipe))
    assert code == 0, output[-3000:]
    assert f"resuming from checkpoint-{stopped_at}" in output
    assert_same_weights(reference_dir, run_dir)


def test_a_half_written_newest_checkpoint_is_skipped(tmp_path, tiny_llama, reference):
    data, reference_dir = reference
    run_dir = tmp_path / "torn"
    recipe = recipe_file(tmp_path, tiny_llama, data, run_dir, max_steps=40)
    code, output = finish(start(recipe))
    assert code == 0, output[-3000:]

    # Make it look unfinished, with a torn newest checkpoint (killed while saving: claimed, never marked
    # complete) and one killed right after it was claimed.
    import shutil

    from ftcli.training.checkpoints import claim

    shutil.rmtree(run_dir / "model")
    (run_dir / "train_results.json").unlink()
    (run_dir / "checkpoint-40" / MARKER).unlink()
    (run_dir / "checkpoint-40" / IN_PROGRESS).write_text('{"global_step": 40}')
    (run_dir / "checkpoint-40" / "optimizer.pt").write_bytes(b"\0" * 10)
    claim(run_dir / "checkpoint-60", 60)

    code, output = finish(start(recipe))
    assert code == 0, output[-3000:]
    assert "skipping checkpoint-40" in output and "skipping checkpoint-60" in output
    assert "resuming from checkpoint-20" in output


def test_resume_refuses_a_recipe_change_that_breaks_it_and_allows_harmless_ones(tmp_path, tiny_llama, reference):
    data, _ = reference
    run_dir = tmp_path / "changed"
    recipe = recipe_file(tmp_path, tiny_llama, data, run_dir)
    kill_after_first_checkpoint(recipe, run_dir)

    code, output = finish(start(recipe, "--set", "lora.r=8", "--set", "train.learning_rate=0.5"))
    assert code == 2
    assert "lora.r" in output and "train.learning_rate" in output and "Traceback" not in output

    code, output = finish(start(recipe, "--set", "train.logging_steps=7"))
    assert code == 0, output[-3000:]
    assert "allowed on resume): train.logging_steps" in output


# ------------------------------------------------------------------ which checkpoints are ours

def _foreign_checkpoint(folder: Path) -> None:
    """What a plain transformers Trainer leaves: no ftcli marker."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x01" * 32)


def test_checkpoints_without_an_ftcli_marker_are_left_alone_and_never_resumed(tmp_path):
    from ftcli.training.checkpoints import last_complete

    run = tmp_path / "run"
    _foreign_checkpoint(run / "checkpoint-30")
    said = []
    assert last_complete(run, warn=said.append) is None
    assert (run / "checkpoint-30" / "model.safetensors").read_bytes() == b"\x01" * 32
    assert said == ["skipping checkpoint-30: not written by ftcli (no ftcli-complete.json); leaving it alone"]


def test_a_checkpoint_is_claimed_then_complete_and_only_ours_are_removed(tmp_path):
    from ftcli import runs
    from ftcli.training.checkpoints import claim, foreign, is_complete, last_complete, mark_complete

    run = tmp_path / "run"
    claim(run / "checkpoint-10", 10)
    assert sorted(p.name for p in (run / "checkpoint-10").iterdir()) == [IN_PROGRESS]  # before any file
    (run / "checkpoint-10" / "model.safetensors").write_bytes(b"w")
    mark_complete(run / "checkpoint-10", 10)
    assert sorted(p.name for p in (run / "checkpoint-10").iterdir()) == [MARKER, "model.safetensors"]
    assert is_complete(run / "checkpoint-10")
    claim(run / "checkpoint-20", 20)  # killed while saving
    (run / "checkpoint-20" / "model.safetensors").write_bytes(b"tor")
    _foreign_checkpoint(run / "checkpoint-30")
    assert runs.looks_like_run(run) and foreign(run) == [run / "checkpoint-30"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary folder left

    # Saved again at the same step: claimed in place, and no longer complete until marked again.
    claim(run / "checkpoint-10", 10)
    assert not is_complete(run / "checkpoint-10") and (run / "checkpoint-10" / "model.safetensors").is_file()
    mark_complete(run / "checkpoint-10", 10)

    assert last_complete(run, warn=lambda message: None) == run / "checkpoint-10"
    assert not (run / "checkpoint-20").exists()  # ours and torn: removed
    assert (run / "checkpoint-30" / "model.safetensors").is_file()  # not ours: kept
    runs.clear_run(run)  # --overwrite clears ours only
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-30"]
    assert not runs.looks_like_run(run)  # only foreign checkpoints left: not an ftcli run


@pytest.mark.parametrize("saving", [{"save_steps": 2, "max_steps": 4}, {"epochs": 2}])
def test_every_checkpoint_is_claimed_before_trainer_writes_into_it(workdir, tiny_llama, monkeypatch, saving):
    """Per step (save_steps) and per epoch (save at each epoch's end): when Trainer starts writing a
    checkpoint, ftcli's in-progress marker is already in it; once saved, only the completion marker."""
    from transformers import Trainer
    from typer.testing import CliRunner

    from ftcli.cli import app

    claimed = []
    original = Trainer.save_model

    def spy(self, output_dir=None, _internal_call=False):
        claimed.append((Path(output_dir).name, (Path(output_dir) / IN_PROGRESS).is_file()))
        return original(self, output_dir, _internal_call)

    monkeypatch.setattr(Trainer, "save_model", spy)
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 8))
    recipe = workdir / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": str(data), "eval_fraction": 0, "max_length": 64},
        "train": {"output_dir": "runs/claimed", "batch_size": 4, "logging_steps": 1, "save_total_limit": None,
                  **saving}}))
    result = CliRunner().invoke(app, ["finetune", str(recipe)])
    assert result.exit_code == 0, result.output
    checkpoints = [name for name, _ in claimed if name.startswith("checkpoint-")]
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert all(was_claimed for name, was_claimed in claimed if name.startswith("checkpoint-")), claimed
    for name in checkpoints:
        files = {p.name for p in (workdir / "runs/claimed" / name).iterdir()}
        assert MARKER in files and IN_PROGRESS not in files
