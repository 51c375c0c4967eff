"""The preference family beyond DPO: KTO (TRL's KTOTrainer, on unpaired rows or on pairs split in
two), ORPO and SimPO (trl.experimental's ORPOTrainer and CPOTrainer, reference-free). Each trains on a
tiny model through the one training path and moves the held-out preference `ftcli eval` reports;
their recipe keys are as strict as DPO's."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from conftest import recipe_problems, write_jsonl
from ftcli.data.splits import load_splits
from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import DataError, UserError
from ftcli.evaluation.preference import _as_pairs
from ftcli.recipe import parse_recipe
from ftcli.training.preference import examples_for, sampling_options
from test_end_to_end import eval_json, run_cli, write_recipe
from test_preference import CHOSEN, QUESTIONS, REJECTED, conversational, dpo_recipe

# The tiny model's own preference before training is the other way round (the pirate reply scores
# higher), so a tuned model that prefers the chosen one has learned it.
GOOD, BAD = REJECTED, CHOSEN


def write_prefs(folder, n_per_question: int = 6) -> str:
    rows = [conversational(q, chosen=GOOD, rejected=BAD) for q in QUESTIONS for _ in range(n_per_question)]
    return str(write_jsonl(folder / "pairs.jsonl", rows))


def unpaired(question: str, reply: str, label) -> dict:
    return {"prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": reply}], "label": label}


def write_unpaired(folder, n_per_question: int = 6) -> str:
    rows = [unpaired(q, reply, label) for q in QUESTIONS for _ in range(n_per_question)
            for reply, label in ((GOOD, True), (BAD, False))]
    return str(write_jsonl(folder / "unpaired.jsonl", rows))


def raw_recipe(preference: dict, data: str = "t.jsonl", **train) -> dict:
    return {"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": data},
            "preference": preference, "train": train}


# ------------------------------------------------------------------------------------------ the recipe

@pytest.mark.parametrize("preference, problem", [
    ({"method": "orpo", "loss_type": "sigmoid"}, "method orpo has one loss: remove loss_type"),
    ({"method": "simpo", "reference": "other-model"}, "method simpo is reference-free"),
    ({"method": "kto", "reference": "none"}, "method kto measures rewards against a reference model"),
    ({"method": "kto", "loss_type": "sigmoid"}, "loss_type 'sigmoid' is not a KTO loss"),
    ({"method": "kto", "loss_type": ["kto", "kto"]}, "method kto takes one loss_type"),
    ({"method": "dpo", "simpo_gamma": 1.0}, "simpo_gamma applies to method simpo only, not dpo"),
    ({"method": "orpo", "desirable_weight": 2.0}, "desirable_weight applies to method kto only, not orpo"),
    ({"method": "simpo", "precompute_reference": True}, "precompute_reference applies to method dpo, ipo, kto only, not simpo"),
    ({"method": "kto", "undesirable_weight": 0}, "preference.undesirable_weight: input should be greater than 0"),
    ({"method": "simpo", "label_smoothing": 0.6}, "preference.label_smoothing: input should be less than 0.5"),
])
def test_each_methods_keys_are_strict(preference, problem):
    problems = recipe_problems(raw_recipe(preference))
    assert any(problem in p for p in problems), problems


def test_kto_needs_two_rows_a_batch_for_its_kl_term():
    problems = recipe_problems(raw_recipe({"method": "kto"}, batch_size=1))
    assert any("train.batch_size must be at least 2" in p for p in problems), problems
    parse_recipe(raw_recipe({"method": "kto", "loss_type": "apo_zero_unpaired"}, batch_size=1))  # no KL term


@pytest.mark.parametrize("method, written", [
    ("simpo", {"beta": 2.0, "simpo_gamma": 0.5, "reference": "none", "label_smoothing": 0.0}),
    ("orpo", {"beta": 0.1, "reference": "none", "loss_type": None, "precompute_reference": None}),
    ("kto", {"beta": 0.1, "loss_type": "kto", "reference": "auto", "desirable_weight": 1.0,
             "undesirable_weight": 1.0, "precompute_reference": True}),
])
def test_each_method_writes_out_the_defaults_it_ran_with(method, written):
    section = parse_recipe(raw_recipe({"method": method})).preference.model_dump()
    assert {key: section[key] for key in written} == written


# -------------------------------------------------------------------------------- KTO's unpaired rows

@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def test_unpaired_rows_are_tokenized_as_sft_renders_the_chat(tmp_path, tokenizer):
    raw = raw_recipe({"method": "kto"}, write_unpaired(tmp_path, 1))
    raw["data"]["eval_fraction"] = 0
    r = parse_recipe(raw)
    splits = load_splits(r)
    assert (splits.mode, splits.format) == ("preference", "unpaired")
    examples = tokenize_pairs(splits.train, tokenizer, r, splits.format).examples
    pairs = tokenize_pairs([conversational(q, GOOD, BAD) for q in QUESTIONS],
                           tokenizer, parse_recipe(raw_recipe({"method": "dpo"})), "preference").examples
    # The same prompt and replies a pair of the same chats gives, one reply per row.
    assert [e["prompt_ids"] for e in examples[::2]] == [p["prompt_ids"] for p in pairs]
    assert [e["completion_ids"] for e in examples[::2]] == [p["chosen_ids"] for p in pairs]
    assert [e["completion_ids"] for e in examples[1::2]] == [p["rejected_ids"] for p in pairs]
    assert [e["label"] for e in examples[:2]] == [True, False]


@pytest.mark.parametrize("row, field, problem", [
    (unpaired("Hi", GOOD, "yes"), "label", "is 'yes': KTO's label is true"),
    (unpaired("Hi", GOOD, 1), "label", "is 1: KTO's label is true"),
    ({**unpaired("Hi", GOOD, True), "prompt": "Hi"}, "prompt", "is a str while completion is a list of turns"),
    ({**unpaired("Hi", GOOD, True), "completion": [{"role": "user", "content": "x"}]}, "completion",
     "has no assistant turn"),
])
def test_a_bad_unpaired_row_names_file_row_and_field(tmp_path, row, field, problem):
    path = write_jsonl(tmp_path / "u.jsonl", [unpaired("Hello", GOOD, True), row])
    with pytest.raises(DataError) as info:
        load_splits(parse_recipe(raw_recipe({"method": "kto"}, str(path))))
    assert f"{path}: row 2: '{field}' {problem}" in info.value.message
    assert "label" in info.value.hint


def test_unpaired_rows_with_a_pair_method_point_to_kto(tmp_path):
    with pytest.raises(DataError) as info:
        load_splits(parse_recipe(raw_recipe({"method": "dpo"}, write_unpaired(tmp_path, 1))))
    assert "unpaired preference data" in info.value.message and "method: kto" in info.value.hint


def test_kto_splits_pairs_in_two_and_pairs_each_row_with_a_mismatched_kl_completion(tmp_path, tokenizer):
    r = parse_recipe(raw_recipe({"method": "kto"}, batch_size=4, seed=7))
    pairs = tokenize_pairs([conversational(q, GOOD, BAD) for q in QUESTIONS], tokenizer, r, "preference").examples
    rows = examples_for(r, pairs, 4)
    assert len(rows) == 2 * len(pairs) and sum(row["label"] for row in rows) == len(pairs)
    for start in range(0, len(rows), 4):  # each batch's KL completions are its own completions, rotated
        batch = rows[start:start + 4]
        completions = [row["completion_ids"] for row in batch]
        assert [row["KL_completion_ids"] for row in batch] == completions[-1:] + completions[:-1]
    assert sampling_options(r) == {"train_sampling_strategy": "sequential"}  # so batches stay as built
    assert examples_for(r, pairs, 4) == rows  # seeded
    assert examples_for(parse_recipe(raw_recipe({"method": "kto"}, batch_size=4, seed=8)), pairs, 4) != rows
    apo = parse_recipe(raw_recipe({"method": "kto", "loss_type": "apo_zero_unpaired"}))
    assert "KL_completion_ids" not in examples_for(apo, pairs, 4)[0] and sampling_options(apo) == {}


def test_unpaired_eval_rows_pair_up_by_prompt_and_say_when_none_do():
    rows = [{"prompt_ids": [1], "completion_ids": [2], "label": True},
            {"prompt_ids": [3], "completion_ids": [4], "label": True},
            {"prompt_ids": [1], "completion_ids": [5], "label": False}]
    assert _as_pairs(rows) == [{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [5]}]
    with pytest.raises(UserError, match="no prompt with both a desirable and an undesirable completion"):
        _as_pairs(rows[:2])


def test_data_preview_shows_each_unpaired_reply_with_its_label(workdir, tiny_llama):
    raw = dpo_recipe(tiny_llama, write_unpaired(workdir, 1), preference={"method": "kto"})
    result = run_cli("data", "preview", str(write_recipe(workdir / "kto.yaml", raw)), "-n", "2")
    assert result.exit_code == 0, result.output
    assert f"desirable: {GOOD}<|im_end|>" in result.stdout and f"undesirable: {BAD}<|im_end|>" in result.stdout


# ------------------------------------------------------------------------------------------- training

@pytest.mark.parametrize("preference, data", [
    ({"method": "orpo"}, "pairs"),
    ({"method": "simpo"}, "pairs"),
    ({"method": "kto"}, "unpaired"),
    ({"method": "kto", "desirable_weight": 1.5}, "pairs"),  # pairs split in two
    ({"method": "kto", "loss_type": "apo_zero_unpaired", "precompute_reference": False}, "unpaired"),
])
def test_each_method_trains_and_raises_the_held_out_preference(workdir, tiny_llama, preference, data):
    path = write_prefs(workdir) if data == "pairs" else write_unpaired(workdir)
    raw = dpo_recipe(tiny_llama, path, preference=preference)
    raw["preference"].pop("beta")  # each method's own default
    result = run_cli("finetune", str(write_recipe(workdir / "run.yaml", raw)))
    assert result.exit_code == 0, result.output
    assert "Tried to track the number of tokens" not in result.output  # ORPO/CPO batches counted as ours
    run = workdir / "runs" / "dpo"
    results = json.loads((run / "train_results.json").read_text())
    assert results["mode"] == "preference" and results["format"] == ("unpaired" if data == "unpaired" else
                                                                     "preference")
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    scores = eval_json(str(run))
    tuned, base = scores["tuned"], scores["base"]
    assert base["logprob_preference"] == 0.0  # the base prefers the other reply
    assert tuned["logprob_preference"] == 1.0 and tuned["preference_accuracy"] == 1.0
    assert tuned["reward_margin"] > 0
    if preference["method"] in ("orpo", "simpo"):  # a reward without a reference: the base has one too
        assert base["preference_accuracy"] == 0.0 and base["reward_margin"] < 0
    else:
        assert set(base) == {"logprob_preference", "logprob_preference_sum"}
    question = ["generate", "Hello", "--run", str(run)]
    tuned_text, base_text = run_cli(*question).stdout, run_cli(*question, "--base").stdout
    assert tuned_text.strip() and tuned_text != base_text


# ----------------------------------------------------------------------------- no lost work

def test_kto_resumed_after_sigkill_ends_with_the_uninterrupted_weights(tmp_path, tiny_llama):
    """KTO's KL term pairs each row with its batch neighbour's completion, so its rows are laid out in
    training order and drawn sequentially: a resumed run must pick that order up where it stopped."""
    from test_resume import assert_same_weights, finish, start, wait_for_checkpoint

    data = write_unpaired(tmp_path)
    paths = {}
    for name in ("whole", "killed"):
        raw = dpo_recipe(tiny_llama, data, output_dir=str(tmp_path / name), preference={"method": "kto"},
                         max_steps=30, save_steps=10, save_total_limit=3, learning_rate=5e-3, batch_size=4)
        raw["preference"].pop("beta")
        raw["lora"]["dropout"] = 0.1  # the RNG must be restored too
        raw["data"]["eval_fraction"] = 0
        paths[name] = write_recipe(tmp_path / f"{name}.yaml", raw)
    code, output = finish(start(paths["whole"]))
    assert code == 0, output[-3000:]
    process = start(paths["killed"])
    wait_for_checkpoint(process, tmp_path / "killed")
    process.kill()
    process.wait()
    code, output = finish(start(paths["killed"]))
    assert code == 0 and "resuming from checkpoint-" in output, output[-3000:]
    assert_same_weights(tmp_path / "whole", tmp_path / "killed")
