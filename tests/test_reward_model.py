"""`task: reward-model`: a one-output sequence classifier trained by TRL's RewardTrainer on the pairs
preference tuning reads, through the one training path, scored by `ftcli eval` as pairwise accuracy."""

from __future__ import annotations

import json

import pytest

from conftest import recipe_problems, write_jsonl
from ftcli.data.splits import load_splits
from ftcli.errors import DataError
from ftcli.recipe import parse_recipe
from test_end_to_end import eval_json, run_cli, write_recipe
from test_preference import QUESTIONS, conversational
from test_preference_methods import write_unpaired

GOOD = ["Good day to you.", "Happy to help.", "Gladly, here it is.", "Of course, friend."]
BAD = ["Go away.", "No.", "Figure it out yourself.", "Not my problem."]


def write_reward_pairs(folder) -> str:
    rows = [conversational(q, GOOD[(i + j) % 4], BAD[(i + 2 * j) % 4])
            for i, q in enumerate(QUESTIONS) for j in range(6)]
    return str(write_jsonl(folder / "pairs.jsonl", rows))


def reward_recipe(model, data, lora=True, **train) -> dict:
    raw = {"task": "reward-model", "model": {"name_or_path": str(model)},
           "data": {"train": data, "eval_fraction": 0.25, "max_length": 64},
           "train": {"output_dir": "runs/rm", "max_steps": 24, "batch_size": 8, "learning_rate": 1e-2,
                     "logging_steps": 8, **train}}
    if lora:
        raw["lora"] = {"r": 8}
    return raw


@pytest.mark.parametrize("lora", [True, False])
def test_a_reward_model_learns_to_score_chosen_above_rejected(workdir, tiny_llama, lora):
    raw = reward_recipe(tiny_llama, write_reward_pairs(workdir), lora=lora)
    result = run_cli("finetune", str(write_recipe(workdir / "rm.yaml", raw)))
    assert result.exit_code == 0, result.output
    run = workdir / "runs" / "rm"
    results = json.loads((run / "train_results.json").read_text())
    assert (results["mode"], results["format"], results["train_samples"]) == ("preference", "preference", 36)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert "pipeline_tag: text-classification" in (run / "model" / "README.md").read_text()
    scores = eval_json(str(run))
    tuned, base = scores["tuned"], scores["base"]  # base: the same body, a fresh head
    assert set(tuned) == {"pairwise_accuracy", "reward_margin"}
    assert tuned["pairwise_accuracy"] == 1.0 and tuned["reward_margin"] > base["reward_margin"] + 1.0
    result = run_cli("generate", "Hello", "--run", str(run))
    assert result.exit_code == 2 and "is a reward-model run" in result.output


def test_a_reward_model_evaluates_during_training(workdir, tiny_llama):
    # Its pairs have no input_ids column either (Trainer's group_by_length eval sampler needs one).
    raw = reward_recipe(tiny_llama, write_reward_pairs(workdir), max_steps=8, logging_steps=4,
                        eval_strategy="steps", eval_steps=4)
    result = run_cli("finetune", str(write_recipe(workdir / "rm.yaml", raw)))
    assert result.exit_code == 0, result.output
    history = json.loads((workdir / "runs/rm/history.json").read_text())
    assert [e["step"] for e in history if "eval_loss" in e] == [4, 8]


def test_validate_says_what_a_reward_model_trains_on(workdir, tiny_llama):
    raw = reward_recipe(tiny_llama, write_reward_pairs(workdir))
    result = run_cli("validate", str(write_recipe(workdir / "rm.yaml", raw)))
    assert result.exit_code == 0 and "reward-model — reward model (preference pairs)" in result.output


@pytest.mark.parametrize("change, problem", [
    ({"preference": {"method": "dpo"}}, "task reward-model has none (a reward model is its own task"),
    ({"eval": {"metrics": ["perplexity"]}}, "'perplexity' is not a reward-model metric"),
    ({"data": {"train": "t.jsonl", "streaming": True}, "train": {"max_steps": 5}},
     "data.streaming does not work with task reward-model"),
])
def test_the_reward_model_recipe_is_strict(change, problem):
    raw = {"task": "reward-model", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, **change}
    problems = recipe_problems(raw)
    assert any(problem in p for p in problems), problems


def test_unpaired_rows_for_a_reward_model_say_what_it_needs(tmp_path):
    r = parse_recipe({"task": "reward-model", "model": {"name_or_path": "m"},
                      "data": {"train": write_unpaired(tmp_path, 1)}})
    with pytest.raises(DataError) as info:
        load_splits(r)
    assert "which a reward model cannot use" in info.value.message and "pair the replies" in info.value.hint
