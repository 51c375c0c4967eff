"""`ftcli eval --harness`: lm-evaluation-harness tasks on the tuned and the base model, offline."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from serve_fixtures import make_run
from test_evaluation import classification_recipe

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "harness" / "pirate-choice.yaml"
needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                                   reason="lm-evaluation-harness is not installed (pip install 'ftcli[harness]')")
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama):
    return make_run(tmp_path_factory.mktemp("harness"), tiny_llama, steps=20, evaluate=False)


@pytest.fixture
def offline(monkeypatch):
    """No network at all: the Hub libraries' offline switches, and any socket connection fails the test."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(self, address, *args):
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def three_row_task(folder: Path) -> Path:
    """A local multiple-choice task over a JSON file (absolute path, so any current folder works)."""
    rows = [{"question": "Where is the treasure?", "choices": ["Arr, under the palm tree!", "In a bank."],
             "answer": 0},
            {"question": "What do pirates drink?", "choices": ["Milk, please.", "Arr, grog!"], "answer": 1},
            {"question": "What is the capital of Peru?", "choices": ["Arr, Lima!", "Lima.", "Arr, Quito!"],
             "answer": 0}]
    data = write_jsonl(folder / "tiny.jsonl", rows)
    task = {"task": "tiny_pirate", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
            "doc_to_choice": "{{choices}}", "doc_to_target": "answer", "metric_list": [{"metric": "acc"}]}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    return path


def direct(model_path: Path, tokenizer_path: Path, task: Path, limit: int | None = None) -> dict:
    """lm-eval run by hand on a model, with no ftcli code in between."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=[str(task)], task_manager=TaskManager(), limit=limit,
                                  log_samples=False, apply_chat_template=True)  # the tiny model chats
    return out["results"]


@needs_lm_eval
def test_harness_metrics_for_base_and_tuned_match_lm_eval_run_directly(run, tiny_llama, tmp_path, offline,
                                                                       monkeypatch):
    tiny = three_row_task(tmp_path)
    monkeypatch.chdir(REPO)  # the shipped task reads its data file relative to the repo root
    result = runner.invoke(app, ["eval", str(run), "--limit", "8", "--harness", f"{SHIPPED},{tiny}"])
    assert result.exit_code == 0, result.output
    table = result.stdout
    for name in ("harness/pirate_choice/acc", "harness/pirate_choice/acc_norm", "harness/tiny_pirate/acc"):
        assert name in table
    row = next(line for line in table.splitlines() if line.startswith("harness/pirate_choice/acc "))
    assert re.fullmatch(r"\S+ +[\d.]+ ± [\d.]+ +[\d.]+ ± [\d.]+ +[+-][\d.]+", row)  # base, tuned, change
    print(table)
    assert "loss" in table  # ftcli's own metrics in the same table

    saved = json.loads((run / "eval_results.json").read_text())
    for side in ("base", "tuned"):
        harness = {k: v for k, v in saved[side].items() if k.startswith("harness/")}
        assert set(harness) == {"harness/pirate_choice/acc", "harness/pirate_choice/acc_norm",
                                "harness/tiny_pirate/acc"}
        assert all(0.0 <= v <= 1.0 for v in harness.values())
        assert saved["stderr"][side]["harness/pirate_choice/acc"] >= 0
    assert saved["harness"]["chat_template"] is True
    assert saved["harness"]["examples"] == {"pirate_choice": 8, "tiny_pirate": 3}  # --limit 8 passed through

    tuned = direct(run / "model", run / "model", SHIPPED, limit=8)
    base = direct(tiny_llama, tiny_llama, tiny)
    assert saved["tuned"]["harness/pirate_choice/acc"] == pytest.approx(tuned["pirate_choice"]["acc,none"])
    assert saved["tuned"]["harness/pirate_choice/acc_norm"] == pytest.approx(tuned["pirate_choice"]["acc_norm,none"])
    assert saved["stderr"]["tuned"]["harness/pirate_choice/acc"] == pytest.approx(
        tuned["pirate_choice"]["acc_stderr,none"])
    assert saved["base"]["harness/tiny_pirate/acc"] == pytest.approx(base["tiny_pirate"]["acc,none"])


@needs_lm_eval
def test_json_output_holds_the_harness_metrics_without_the_base(run, tmp_path, offline):
    result = runner.invoke(app, ["eval", str(run), "--json", "--no-base", "--limit", "4",
                                 "--harness", str(three_row_task(tmp_path)), "--harness-no-chat-template"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # stdout holds only the JSON object: lm-eval's logs go elsewhere
    assert 0.0 <= out["tuned"]["harness/tiny_pirate/acc"] <= 1.0
    assert "base" not in out
    saved = json.loads((run / "eval_results.json").read_text())
    assert saved["harness"]["chat_template"] is False


@needs_lm_eval
def test_an_unknown_task_name_says_how_to_pass_a_local_yaml(run, offline):
    result = runner.invoke(app, ["eval", str(run), "--harness", "pirate_choise_nonexistent"])
    assert result.exit_code == 2
    assert "unknown lm-eval task 'pirate_choise_nonexistent'" in result.output
    assert "task YAML file" in result.output and "--harness-include" in result.output
    assert "Traceback" not in result.output
    missing = runner.invoke(app, ["eval", str(run), "--harness", "no/such/task.yaml"])
    assert missing.exit_code == 2 and "task file not found" in missing.output


@needs_lm_eval
def test_a_hub_task_offline_is_a_user_error(run, offline, monkeypatch):
    import datasets

    def unreachable(path, *args, **kwargs):  # what datasets raises offline for a Hub dataset not in the cache
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    result = runner.invoke(app, ["eval", str(run), "--no-base", "--limit", "2", "--harness", "arc_easy"])
    assert result.exit_code == 2, result.output
    assert "could not be fetched" in result.output and "allenai/ai2_arc" in result.output
    assert "task YAML over local files" in result.output


@needs_lm_eval
def test_a_folder_of_tasks_is_found_by_name(run, tmp_path, offline):
    three_row_task(tmp_path / "tasks")
    result = runner.invoke(app, ["eval", str(run), "--json", "--no-base", "--limit", "4",
                                 "--harness", "tiny_pirate", "--harness-include", str(tmp_path / "tasks")])
    assert result.exit_code == 0, result.output
    assert "harness/tiny_pirate/acc" in json.loads(result.stdout)["tuned"]


def test_a_classifier_run_is_refused(workdir, tiny_bert):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 40))
    recipe = classification_recipe(tiny_bert, data, epochs=1)
    (workdir / "cls.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert runner.invoke(app, ["finetune", "cls.yaml"]).exit_code == 0
    result = runner.invoke(app, ["eval", "runs/cls", "--harness", "hellaswag"])
    assert result.exit_code == 2
    assert "causal-lm" in result.output and "sequence-classification" in result.output


def test_without_lm_eval_the_error_names_the_extra(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now raises ImportError
    result = runner.invoke(app, ["eval", str(run), "--harness", "hellaswag"])
    assert result.exit_code == 2
    assert "pip install 'ftcli[harness]'" in result.output
