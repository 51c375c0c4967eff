"""finetune -> eval -> generate through the CLI, on tiny models built in fixtures, for every task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app

runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def sft_recipe(model: Path, data: Path, **train) -> dict:
    return {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 96},
        "train": {"output_dir": "runs/sft", "max_steps": 40, "batch_size": 8, "learning_rate": 5e-3,
                  "logging_steps": 10, **train},
        "generate": {"max_new_tokens": 12},
    }


def eval_json(*args: str) -> dict:
    result = run_cli("eval", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds only the JSON object


def test_sft_full_finetune_learns_and_writes_the_run_contract(workdir, tiny_llama):
    rows = repo_rows("pirate", 80)
    # After the 80 real rows, one row for each cleaning step: cleaning must leave exactly those 80.
    # duplicates (the 2nd once normalised: U+212A KELVIN SIGN is NFC's "K", in "Kyiv")
    noise = [rows[3], {**rows[64], "response": rows[64]["response"].replace("K", "\u212a")},
             {"prompt": "Say hello.", "response": ""},  # incomplete
             {"prompt": "Hi?", "response": "Arr."},  # too short
             {"prompt": "Tell me a long tale.", "response": " ".join(["Arr,"] * 80)}]  # too long
    data = write_jsonl(workdir / "data" / "train.jsonl", rows + noise)
    raw = sft_recipe(tiny_llama, data)
    raw["data"].update(dedup=True, min_chars=20, max_chars=300)
    recipe = write_recipe(workdir / "sft.yaml", raw)

    result = run_cli("finetune", str(recipe))
    assert result.exit_code == 0, result.output

    run = workdir / "runs" / "sft"
    results = json.loads((run / "train_results.json").read_text())
    assert results["train_samples"] == 64  # 80 rows less the 20% held out for eval
    assert results["global_step"] == 40 and results["mode"] == "sft"
    assert results["data_cleaning"] == {"train": {"normalized": 1, "incomplete": 1, "duplicates": 2,
                                                  "too_short": 1, "too_long": 1}}
    assert results["data_sources"] == [{"split": "train", "source": str(data), "weight": 1.0, "rows_read": 85,
                                        "rows_kept": 80, "rows_used": 64}]
    assert "dropped 5 rows" in result.output
    for key in ("train_loss", "train_runtime", "epoch"):
        assert key in results
    assert any(p.name.startswith("checkpoint-") for p in run.iterdir())
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["data"]["train"] == str(data) and saved["train"]["output_dir"] == str(run)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(run / "model")
    assert AutoTokenizer.from_pretrained(run / "model").chat_template  # tokenizer saved with the model

    # With no target, eval takes the latest run in the current directory; the tuned model must beat
    # the random base on held-out rows of the same distribution.
    report = eval_json()
    assert report["run"] == str(run)
    assert set(report["tuned"]) == {"perplexity", "loss"}
    assert report["tuned"]["loss"] < report["base"]["loss"] - 1.0
    assert json.loads((run / "eval_results.json").read_text())["tuned"] == report["tuned"]

    first = run_cli("generate", "What is the capital of Peru?")
    second = run_cli("generate", "What is the capital of Peru?", "--run", str(run))
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() and first.stdout == second.stdout  # greedy is deterministic
    assert "[ftcli]" not in first.stdout  # logs stay on stderr

    # A finished run is never overwritten silently.
    again = run_cli("finetune", str(recipe))
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_lora_saves_adapter_and_merged_model_with_the_same_outputs(workdir, tiny_llama):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 40))
    recipe = sft_recipe(tiny_llama, data, max_steps=6, learning_rate=5e-2)
    recipe["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    result = run_cli("finetune", str(write_recipe(workdir / "lora.yaml", recipe)))
    assert result.exit_code == 0, result.output

    run = workdir / "runs" / "sft"
    assert (run / "adapter" / "adapter_config.json").is_file()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted = PeftModel.from_pretrained(base, run / "adapter")(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(run / "model")(ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-5)  # training changed something
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)  # merge kept it exactly


def test_plain_text_language_modelling(workdir, tiny_llama_plain):
    texts = [{"text": f"{r['prompt']} {r['response']}"} for r in repo_rows("pirate", 60)]
    data = write_jsonl(workdir / "corpus.jsonl", texts)
    recipe = write_recipe(workdir / "lm.yaml", sft_recipe(tiny_llama_plain, data))

    check = run_cli("validate", str(recipe))
    assert check.exit_code == 0 and "plain-text" in check.stdout

    assert run_cli("finetune", str(recipe)).exit_code == 0
    assert json.loads((workdir / "runs/sft/train_results.json").read_text())["mode"] == "text"
    report = eval_json("runs/sft")
    assert report["tuned"]["perplexity"] < report["base"]["perplexity"] / 2

    result = run_cli("generate", "Arr, matey!", "--max-new-tokens", "5")
    assert result.exit_code == 0 and result.stdout.strip()


def test_sequence_classification_with_string_labels(workdir, tiny_bert):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 240))
    recipe = write_recipe(workdir / "cls.yaml", {
        "task": "sequence-classification",
        "model": {"name_or_path": str(tiny_bert)},
        "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 48},
        # 8 epochs: this tiny BERT only starts to separate the classes in its 4th, so 4 left the
        # outcome to the batch order (0.43 to 1.0 across seeds).
        "train": {"output_dir": "runs/cls", "epochs": 8, "batch_size": 16, "learning_rate": 3e-3},
    })
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == 0, result.output

    from transformers import AutoConfig, AutoModelForSequenceClassification

    run = workdir / "runs" / "cls"
    config = AutoConfig.from_pretrained(run / "model")
    assert config.id2label == {0: "negative", 1: "positive"}  # the data's own label values
    AutoModelForSequenceClassification.from_pretrained(run / "model")

    report = eval_json(str(recipe))  # a recipe file names its run through output_dir
    assert set(report["tuned"]) == {"accuracy", "f1"}
    assert report["tuned"]["accuracy"] >= 0.8 and report["tuned"]["accuracy"] > report["base"]["accuracy"]

    no_base = eval_json(str(run), "--no-base")
    assert "base" not in no_base and no_base["tuned"] == report["tuned"]

    generated = run_cli("generate", "hello", "--run", str(run))
    assert generated.exit_code == 2 and "causal-lm" in generated.output


def test_a_chat_recipe_needs_a_chat_template(workdir, tiny_llama, tiny_llama_plain):
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 16))
    recipe = sft_recipe(tiny_llama_plain, data, max_steps=2)
    recipe["data"]["template"] = "chat"
    path = write_recipe(workdir / "chat.yaml", recipe)
    for command in ("validate", "finetune"):
        result = run_cli(command, str(path))
        assert result.exit_code == 2 and "has no chat template" in result.output
        assert "data.template: plain" in result.output
    assert not (workdir / "runs" / "sft" / "model").exists()

    recipe["model"]["name_or_path"] = str(tiny_llama)
    result = run_cli("validate", str(write_recipe(workdir / "chat.yaml", recipe)))
    assert result.exit_code == 0 and "chat template" in result.stdout


def test_a_tokenizer_without_pad_token_pads_with_eos_and_says_so(workdir, tiny_llama):
    import shutil

    from transformers import AutoTokenizer

    model_dir = workdir / "no-pad"
    shutil.copytree(tiny_llama, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None

    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 16))
    result = run_cli("finetune", str(write_recipe(workdir / "r.yaml", sft_recipe(model_dir, data, max_steps=2))))
    assert result.exit_code == 0, result.output
    assert "no pad token; padding with its EOS token '<|im_end|>'" in result.output


def test_a_full_disk_is_a_user_error_naming_the_path(workdir, tiny_llama, monkeypatch):
    import errno

    import ftcli.training.finetune

    def full(recipe, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ftcli.training.finetune, "save_recipe", full)
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 16))
    result = run_cli("finetune", str(write_recipe(workdir / "r.yaml", sft_recipe(tiny_llama, data, max_steps=2))))
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "recipe.yaml" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("task", ["causal-lm", "sequence-classification"])
def test_gradient_accumulation_does_not_scale_the_loss(workdir, tiny_llama, tiny_bert, task):
    """One step of 16 rows, as one batch or two accumulated batches of 8: the same loss. (Trainer takes a
    model with **kwargs to divide its loss by the batch's label count; BERT's heads average instead.)"""
    name, model, field = ("pirate", tiny_llama, None) if task == "causal-lm" else ("reviews", tiny_bert, 48)
    data = write_jsonl(workdir / "train.jsonl", repo_rows(name, 16))
    losses = []
    for accumulate in (1, 2):
        recipe = write_recipe(workdir / f"ga{accumulate}.yaml", {
            "task": task, "model": {"name_or_path": str(model)},
            "data": {"train": str(data), "eval_fraction": 0, "max_length": field or 96},
            "train": {"output_dir": f"runs/ga{accumulate}", "max_steps": 1, "batch_size": 16 // accumulate,
                      "gradient_accumulation_steps": accumulate}})
        result = run_cli("finetune", str(recipe))
        assert result.exit_code == 0, result.output
        losses.append(json.loads((workdir / f"runs/ga{accumulate}/train_results.json").read_text())["train_loss"])
    # BERT's dropout draws different masks for 1×16 and 2×8 rows: equal within 1%, where the bug gave 2×.
    assert losses[1] == pytest.approx(losses[0], rel=1e-4 if task == "causal-lm" else 1e-2)
