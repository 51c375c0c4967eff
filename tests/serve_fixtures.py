"""A tiny finished run with eval results and a served copy of it, shared by the serve tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl

QUESTIONS = ["What is the capital of Peru?", "Hi", "Tell me about the sea and the wind and the ships, please.",
             "Why is the sky blue?", "Name a fruit.", "What do pirates eat for breakfast on a long voyage?",
             "Count to three.", "Where is the treasure?"]


def make_run(root: Path, tiny_llama: Path, name: str = "pirate", steps: int = 30, logging_steps: int = 5,
             evaluate: bool = True) -> Path:
    """A tiny chat model fine-tuned (fully, `steps` steps) on pirate answers, evaluated on 8 examples
    unless `evaluate` is False (the generate tests use it too)."""
    from ftcli.cli import app

    data = write_jsonl(root / "train.jsonl", repo_rows("pirate", 80))
    recipe = {
        "task": "causal-lm",
        "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 96},
        "train": {"output_dir": str(root / "runs" / name), "max_steps": steps, "batch_size": 8,
                  "learning_rate": 5e-3, "logging_steps": logging_steps},
        "generate": {"max_new_tokens": 12},
    }
    (root / "sft.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    runner = CliRunner()
    commands = [["finetune", str(root / "sft.yaml")]] + ([["eval", str(root / "runs" / name), "--limit", "8"]]
                                                          if evaluate else [])
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return root / "runs" / name


def snapshot(folder: Path) -> dict:
    """Every file below `folder` with its size and modification time (to show nothing was written)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama):
    return make_run(tmp_path_factory.mktemp("serve"), tiny_llama)


def keep_artifact(path: Path) -> Path:
    """Copy a test's file to $FTCLI_TEST_ARTIFACTS (default tests/artifacts/, git-ignored) for people to look at."""
    folder = Path(os.environ.get("FTCLI_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(path, folder / path.name))
