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
from ftcli.training.checkpoints import MARKER

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

    # Make it look unfinished, with a torn newest checkpoint (killed while saving) and an empty one.
    import shutil

    shutil.rmtree(run_dir / "model")
    (run_dir / "train_results.json").unlink()
    (run_dir / "checkpoint-40" / MARKER).unlink()
    (run_dir / "checkpoint-40" / "optimizer.pt").write_bytes(b"\0" * 10)
    (run_dir / "checkpoint-60").mkdir()

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
