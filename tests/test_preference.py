"""Preference tuning (DPO, IPO) on TRL's DPOTrainer: the recipe section, every pair format, pairs
tokenized exactly as SFT renders the same chat, training that moves the implicit reward, ftcli eval's
preference figures, and the guarantees every run has (resume equals an uninterrupted run, Ctrl-C,
non-finite loss, bad data)."""

from __future__ import annotations

import json
import signal

import pytest
from transformers import AutoTokenizer

from conftest import recipe_problems, write_jsonl
from ftcli.data.splits import load_splits
from ftcli.data.tokenize import IGNORE_INDEX, tokenize_sft
from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import DataError
from ftcli.recipe import parse_recipe
from test_end_to_end import eval_json, run_cli, write_recipe
from test_resume import assert_same_weights, finish, start, wait_for_checkpoint

QUESTIONS = ["Hello", "Who are you?", "Where is the ship?", "Any treasure?", "What is the weather?",
             "Can you help me?", "Tell me a story.", "Where are we going?"]
CHOSEN, REJECTED = "Arr, matey!", "Good day, sir."


def conversational(question: str, chosen: str = CHOSEN, rejected: str = REJECTED) -> dict:
    return {"prompt": [{"role": "user", "content": question}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def recipe(train, preference=None, **data):
    return parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "preference": preference or {},
                         "data": {"train": str(train), "eval_fraction": 0, **data}})


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


# --------------------------------------------------------------------------------------- the recipe

@pytest.mark.parametrize("preference, problem", [
    ({"methd": "dpo"}, "preference.methd: unknown key — did you mean method?"),
    ({"method": "ppo"}, "preference.method: input should be 'dpo', 'ipo', 'kto', 'orpo' or 'simpo'"),
    ({"loss_type": "sigmod"}, "loss_type 'sigmod' is not a DPO loss — did you mean sigmoid?"),
    ({"method": "ipo", "loss_type": "hinge"}, "method ipo is DPO's loss_type ipo"),
    ({"reference": "none"}, "method dpo measures rewards against a reference model"),
    ({"beta": 0}, "preference.beta: input should be greater than 0"),
    ({"loss_type": ["sigmoid", "sfft"]}, "loss_type 'sfft' is not a DPO loss — did you mean sft?"),
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "loss_weights has 1 weights for 2 loss_type values"),
])
def test_the_preference_section_is_strict(preference, problem):
    raw = {"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "preference": preference}
    assert any(problem in p for p in recipe_problems(raw)), recipe_problems(raw)


def test_preference_fits_only_causal_lm_and_says_what_ran():
    raw = {"task": "seq2seq", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "preference": {}}
    assert any("preference: tunes a causal-lm" in p for p in recipe_problems(raw))
    r = recipe("t.jsonl", {"method": "ipo"})
    assert (r.preference.loss_type, r.eval.metrics) == ("ipo", ["preference_accuracy", "reward_margin",
                                                                  "logprob_preference", "logprob_preference_sum"])
    raw = {"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "preference": {},
           "eval": {"metrics": ["perplexity"]}}
    assert any("'perplexity' is not a preference metric" in p for p in recipe_problems(raw))


# ------------------------------------------------------------------------------------ pair formats

STANDARD = {"prompt": "Hello", "chosen": CHOSEN, "rejected": REJECTED}
IMPLICIT = {"chosen": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": CHOSEN}],
            "rejected": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": REJECTED}]}
SHAREGPT = {"conversations": [{"from": "human", "value": "Hello"}], "chosen": {"from": "gpt", "value": CHOSEN},
            "rejected": {"from": "gpt", "value": REJECTED}}


@pytest.mark.parametrize("row, fmt", [(STANDARD, "preference"), (conversational("Hello"), "preference"),
                                      (IMPLICIT, "preference"), (SHAREGPT, "sharegpt_preference")])
def test_every_pair_format_gives_the_tokens_sft_trains_on_the_same_chat(tmp_path, tokenizer, row, fmt):
    r = recipe(write_jsonl(tmp_path / "pairs.jsonl", [row]))
    splits = load_splits(r)
    assert (splits.mode, splits.format) == ("preference", fmt)
    (pair,) = tokenize_pairs(splits.train, tokenizer, r, splits.format).examples
    # The same prompt and reply as an SFT chat: its masked prompt, then its learned reply.
    for side, reply in (("chosen_ids", CHOSEN), ("rejected_ids", REJECTED)):
        sft = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}})
        chat = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": reply}]}
        (example,) = tokenize_sft([chat], tokenizer, sft, "messages").examples
        cut = sum(label == IGNORE_INDEX for label in example["labels"])
        assert pair["prompt_ids"] == example["input_ids"][:cut]
        assert pair[side] == example["input_ids"][cut:]
    assert tokenizer.decode(pair["chosen_ids"]) == CHOSEN + "<|im_end|>\n"


def test_string_pairs_without_a_chat_template_end_with_eos(tmp_path, tiny_llama_plain):
    tok = AutoTokenizer.from_pretrained(tiny_llama_plain)
    r = recipe(write_jsonl(tmp_path / "pairs.jsonl", [STANDARD]))
    (pair,) = tokenize_pairs(load_splits(r).train, tok, r, "preference").examples
    assert tok.decode(pair["prompt_ids"]) == tok.bos_token + "Hello\n"
    assert pair["chosen_ids"][-1] == tok.eos_token_id and tok.decode(pair["chosen_ids"][:-1]) == CHOSEN


def test_field_names_are_mappable(tmp_path):
    row = {"prompt": "Hello", "good": CHOSEN, "bad": REJECTED}
    splits = load_splits(recipe(write_jsonl(tmp_path / "p.jsonl", [row]), chosen_field="good", rejected_field="bad"))
    assert splits.format == "preference" and len(splits.train) == 1


def test_missing_and_identical_replies_are_dropped_and_counted(tmp_path):
    rows = [conversational(q) for q in QUESTIONS[:3]]
    rows += [{**STANDARD, "rejected": None}, {**STANDARD, "rejected": CHOSEN}]
    splits = load_splits(recipe(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert len(splits.train) == 3
    assert (splits.cleaning["train"]["incomplete"], splits.cleaning["train"]["identical_pairs"]) == (1, 1)
    assert "1 incomplete, 1 identical chosen and rejected" in splits.dropped_summary()


@pytest.mark.parametrize("row, field, problem", [
    ({"chosen": IMPLICIT["chosen"], "rejected": [{"role": "user", "content": "Bye"}, IMPLICIT["rejected"][1]]},
     "chosen", "shares no opening turns with the rejected chat"),
    ({"prompt": "Hello", "chosen": CHOSEN, "rejected": IMPLICIT["rejected"]}, "chosen", "is a str while rejected"),
    ({"chosen": CHOSEN, "rejected": REJECTED}, "prompt", "is missing: string replies need the prompt"),
    ({**conversational("Hello"), "rejected": [{"role": "user", "content": "x"}]}, "rejected",
     "has no assistant turn"),
    ({**conversational("Hello"), "prompt": [*conversational("Hello")["prompt"], {"role": "assistant", "content": "a"}]},
     "prompt", "ends with an assistant turn"),
    ({**SHAREGPT, "chosen": {"from": "bot", "value": CHOSEN}}, "chosen", "turn 1 is from 'bot', which data.roles does not map"),
])
def test_a_bad_pair_names_file_row_and_field(tmp_path, row, field, problem):
    good = SHAREGPT if "conversations" in row else conversational("Hi")
    path = write_jsonl(tmp_path / "p.jsonl", [good, row])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert f"{path}: row 2: '{field}' {problem}" in info.value.message
    assert "chosen" in info.value.hint


def test_sft_data_in_a_preference_recipe_says_what_is_missing(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "Hello", "response": CHOSEN}])
    with pytest.raises(DataError, match="preference tuning needs pairs: fields 'chosen' and 'rejected'"):
        load_splits(recipe(path))


def test_a_preference_file_in_an_sft_recipe_points_to_the_preference_section(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [conversational("Hello")])
    sft = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": str(path)}})
    with pytest.raises(DataError) as info:
        load_splits(sft)
    assert "this is preference data" in info.value.message and "preference: section" in info.value.hint


# ------------------------------------------------------------------------------------------ training

def write_pairs(folder, n_per_question: int = 6) -> str:
    rows = [conversational(q) for q in QUESTIONS for _ in range(n_per_question)]
    return str(write_jsonl(folder / "pairs.jsonl", rows))


def dpo_recipe(model, data, output_dir="runs/dpo", preference=None, lora=True, **train) -> dict:
    raw = {"task": "causal-lm", "model": {"name_or_path": str(model)},
           "data": {"train": data, "eval_fraction": 0.25, "max_length": 64},
           "preference": {"method": "dpo", "beta": 0.1, **(preference or {})},
           "train": {"output_dir": output_dir, "max_steps": 24, "batch_size": 8, "learning_rate": 1e-2,
                     "logging_steps": 8, **train}}
    if lora:
        raw["lora"] = {"r": 8}
    return raw


@pytest.mark.parametrize("preference, lora", [
    ({}, True),  # DPO + LoRA: the reference is the base with adapters off
    ({"method": "ipo"}, True),
    ({"loss_type": "hinge", "precompute_reference": False}, True),  # a reference pass per step
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}, True),  # RPO: DPO + the chosen's likelihood
    ({"precompute_reference": False}, False),  # full fine-tune: a frozen copy as reference
])
def test_preference_tuning_raises_the_held_out_preference(workdir, tiny_llama, preference, lora):
    raw = dpo_recipe(tiny_llama, write_pairs(workdir), preference=preference, lora=lora)
    result = run_cli("finetune", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 0, result.output
    run = workdir / "runs" / "dpo"
    results = json.loads((run / "train_results.json").read_text())
    assert results["mode"] == "preference" and results["train_samples"] == 36
    if lora:  # one adapter merged: TRL's reference copy is gone
        assert (run / "adapter" / "adapter_model.safetensors").is_file()
    scores = eval_json(str(run))
    tuned, base = scores["tuned"], scores["base"]
    assert tuned["preference_accuracy"] == 1.0 and tuned["reward_margin"] > 0.5
    assert tuned["logprob_preference"] == 1.0
    assert set(base) == {"logprob_preference", "logprob_preference_sum"}  # no reward against itself
    # --base answers with the reference, the run with the tuned policy: they differ.
    question = ["generate", "Hello", "--run", str(run)]
    tuned_text, base_text = run_cli(*question).stdout, run_cli(*question, "--base").stdout
    assert tuned_text.strip() and tuned_text != base_text


def test_evaluation_during_preference_training_logs_the_reward_curves(workdir, tiny_llama):
    # Pairs have no input_ids column, from which Trainer's group_by_length eval sampler reads lengths.
    raw = dpo_recipe(tiny_llama, write_pairs(workdir), max_steps=8, logging_steps=4, eval_strategy="steps",
                     eval_steps=4)
    result = run_cli("finetune", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 0, result.output
    history = json.loads((workdir / "runs/dpo/history.json").read_text())
    evals = [e for e in history if "eval_rewards/margins" in e]
    assert [e["step"] for e in evals] == [4, 8]
    assert "id='rewards-margins-plot'" in (workdir / "runs/dpo/report.html").read_text()


def test_a_reference_path_is_the_reference(workdir, tiny_llama):
    raw = dpo_recipe(tiny_llama, write_pairs(workdir), preference={"reference": str(tiny_llama)}, max_steps=8)
    result = run_cli("finetune", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 0, result.output
    assert "reference model: " + str(tiny_llama) in result.output
    assert eval_json("runs/dpo")["tuned"]["reward_margin"] > 0


def test_validate_checks_pairs_as_finetune_does(workdir, tiny_llama, tiny_llama_plain):
    raw = dpo_recipe(tiny_llama_plain, write_pairs(workdir))
    for command in ("validate", "finetune"):
        result = run_cli(command, str(write_recipe(workdir / "dpo.yaml", raw)))
        assert result.exit_code == 2 and "preference pairs of chats need a chat template" in result.output
    raw["model"]["name_or_path"] = str(tiny_llama)
    result = run_cli("validate", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 0 and "preference tuning (preference pairs)" in result.output


def test_a_diverging_preference_run_exits_3(workdir, tiny_llama):
    raw = dpo_recipe(tiny_llama, write_pairs(workdir), lora=False, max_steps=4, learning_rate=1e10,
                     max_grad_norm=1e9)
    result = run_cli("finetune", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 3, result.output
    assert "non-finite" in result.output and not (workdir / "runs" / "dpo" / "model").exists()


# ----------------------------------------------------------------------------- no lost work

def _resume_recipe(tmp_path, model, data, name):
    raw = dpo_recipe(model, data, output_dir=str(tmp_path / name), max_steps=60, save_steps=10,
                     save_total_limit=3, learning_rate=5e-3, batch_size=4)
    raw["lora"]["dropout"] = 0.1  # resuming must restore the RNG as well as weights and data order
    raw["data"]["eval_fraction"] = 0
    return write_recipe(tmp_path / f"{name}.yaml", raw)


def test_sigkill_and_ctrl_c_then_resume_end_with_the_uninterrupted_weights(tmp_path, tiny_llama):
    # The uninterrupted run scores the pairs with the reference; the others find those scores cached
    # (ftcli's cache): with or without that pass, runs must train alike.
    data = write_pairs(tmp_path)
    code, output = finish(start(_resume_recipe(tmp_path, tiny_llama, data, "reference")))
    assert code == 0, output[-3000:]

    killed = _resume_recipe(tmp_path, tiny_llama, data, "killed")
    process = start(killed)
    wait_for_checkpoint(process, tmp_path / "killed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    code, output = finish(start(killed))
    assert code == 0 and "resuming from checkpoint-" in output, output[-3000:]
    assert_same_weights(tmp_path / "reference", tmp_path / "killed")

    interrupted = _resume_recipe(tmp_path, tiny_llama, data, "interrupted")
    process = start(interrupted)
    wait_for_checkpoint(process, tmp_path / "interrupted")
    process.send_signal(signal.SIGINT)
    code, output = finish(process)
    assert code == 130 and "Traceback" not in output, output[-3000:]
    code, output = finish(start(interrupted))
    assert code == 0, output[-3000:]
    assert_same_weights(tmp_path / "reference", tmp_path / "interrupted")


def test_two_processes_tune_like_one_with_the_same_global_batch(tmp_path, tiny_llama):
    from test_distributed import ftcli, logged_losses, run

    data = write_pairs(tmp_path, 4)  # 32 pairs: whole global batches of 8
    paths = {}
    for name, batch in (("two", 4), ("one", 8)):
        raw = dpo_recipe(tiny_llama, data, output_dir=str(tmp_path / name), max_steps=8, batch_size=batch,
                         logging_steps=1, save_steps=4)
        raw["data"]["eval_fraction"] = 0
        raw["lora"]["dropout"] = 0.0  # each rank draws its own dropout masks
        paths[name] = write_recipe(tmp_path / f"{name}.yaml", raw)
    result = run(*ftcli("finetune", str(paths["two"]), "--nproc", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 processes" in result.stderr
    result = run(*ftcli("finetune", str(paths["one"])))
    assert result.returncode == 0, result.stderr[-3000:]
    two, one = logged_losses(tmp_path / "two"), logged_losses(tmp_path / "one")
    assert len(two) == len(one) == 8
    assert max(abs(a - b) for a, b in zip(two, one)) < 1e-4, (two, one)


def test_data_preview_shows_prompt_chosen_and_rejected_as_scored(workdir, tiny_llama):
    raw = dpo_recipe(tiny_llama, write_pairs(workdir, 1))
    result = run_cli("data", "preview", str(write_recipe(workdir / "dpo.yaml", raw)), "-n", "1")
    assert result.exit_code == 0, result.output
    shown = result.stdout.split("--- example 1")[1]
    assert "⟦<|im_start|>user\n" in shown and "<|im_start|>assistant\n⟧" in shown
    assert f"chosen:   {CHOSEN}<|im_end|>" in shown and f"rejected: {REJECTED}<|im_end|>" in shown


def test_two_identical_whole_chats_are_an_identical_pair_dropped_and_counted(tmp_path):
    rows = [IMPLICIT, {"chosen": IMPLICIT["chosen"], "rejected": IMPLICIT["chosen"]}]
    splits = load_splits(recipe(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert len(splits.train) == 1 and splits.cleaning["train"]["identical_pairs"] == 1
