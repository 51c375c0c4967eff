"""Evaluation during training (best model, early stopping) and the details of `ftcli eval`."""

from __future__ import annotations

import json

import pytest

from conftest import repo_rows, write_jsonl
from test_end_to_end import eval_json, run_cli, sft_recipe, write_recipe


def classification_recipe(model, data, **train) -> dict:
    return {
        "task": "sequence-classification",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 48},
        "train": {"output_dir": "runs/cls", "epochs": 6, "batch_size": 16, "learning_rate": 3e-3,
                  "logging_steps": 5, **train},
        "eval": {"metrics": ["accuracy", "f1", "matthews_correlation"]},
    }


def weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_best_model_by_accuracy_with_early_stopping(workdir, tiny_bert):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 240))
    recipe = classification_recipe(tiny_bert, data, eval_strategy="steps", eval_steps=5,
                                   metric_for_best_model="accuracy", early_stopping_patience=2)
    result = run_cli("finetune", str(write_recipe(workdir / "cls.yaml", recipe)))
    assert result.exit_code == 0, result.output

    run = workdir / "runs" / "cls"
    results = json.loads((run / "train_results.json").read_text())
    assert results["global_step"] < 6 * 12  # early stopping ended it before the 6 epochs
    best = run / results["best_checkpoint"]
    assert results["best_step"] == int(best.name.split("-")[1])
    state = json.loads((best / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_accuracy" in e]
    assert results["best_eval_accuracy"] == max(e["eval_accuracy"] for e in evals)
    # model/ holds the best checkpoint's weights, not the last step's.
    best_weights, final = weights(best), weights(run / "model")
    for name, tensor in best_weights.items():
        assert (final[name] - tensor).abs().max() == 0, name


def test_classification_eval_reports_per_class_and_confusion(workdir, tiny_bert):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 240))
    assert run_cli("finetune", str(write_recipe(workdir / "cls.yaml", classification_recipe(tiny_bert, data)))
                   ).exit_code == 0
    result = run_cli("eval")
    assert result.exit_code == 0, result.output
    assert "per class" in result.stdout and "true negative" in result.stdout

    saved = json.loads((workdir / "runs/cls/eval_results.json").read_text())
    details, tuned = saved["tuned_details"], saved["tuned"]
    matrix = details["confusion_matrix"]
    assert details["labels"] == ["negative", "positive"]
    assert sum(map(sum, matrix)) == saved["examples"] == 60
    # Independent paths agree: accuracy from the metric module, the diagonal from our own counts.
    assert tuned["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(2)) / 60)
    assert [details["per_class"][label]["support"] for label in details["labels"]] == [sum(r) for r in matrix]
    assert set(tuned) == {"accuracy", "f1", "matthews_correlation"}
    png = workdir / "runs/cls/confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved["eval_data_sha256"] and saved["versions"]["transformers"]


def test_classification_loss_is_the_cross_entropy_training_reports(workdir, tiny_bert):
    # eval.metrics may name loss for a classifier (a sweep can rank by it): the mean cross-entropy over the
    # eval rows, which Trainer's own evaluation at the last step measures on the same rows independently.
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 240))
    recipe = classification_recipe(tiny_bert, data, max_steps=10, eval_strategy="steps", eval_steps=10)
    recipe["eval"]["metrics"] = ["accuracy", "loss"]
    assert run_cli("finetune", str(write_recipe(workdir / "cls.yaml", recipe))).exit_code == 0
    result = run_cli("eval", "--json")
    assert result.exit_code == 0, result.output
    tuned, base = json.loads(result.stdout)["tuned"], json.loads(result.stdout)["base"]
    history = json.loads((workdir / "runs/cls/history.json").read_text())
    trainer_loss = [e["eval_loss"] for e in history if "eval_loss" in e][-1]
    assert tuned["loss"] == pytest.approx(trainer_loss, rel=1e-4)
    assert base["loss"] != pytest.approx(tuned["loss"], rel=1e-3)  # the untrained head scores differently


def test_compare_shows_runs_side_by_side(workdir, tiny_bert):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 160))
    for name, lr in (("slow", 1e-4), ("fast", 3e-3)):
        recipe = classification_recipe(tiny_bert, data, output_dir=f"runs/{name}", learning_rate=lr, epochs=3)
        assert run_cli("finetune", str(write_recipe(workdir / f"{name}.yaml", recipe))).exit_code == 0
    assert run_cli("eval", "runs/fast").exit_code == 0  # one run evaluated already, one not

    result = run_cli("eval", "--compare", "runs/slow", "--compare", "runs/fast")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "accuracy", "f1", "matthews_correlation"]
    assert [line.split()[0] for line in lines[2:]] == ["slow", "fast"]
    rows = json.loads(run_cli("eval", "--compare", "runs/slow", "--compare", "runs/fast", "--json").stdout)
    assert rows[1]["tuned"]["accuracy"] > rows[0]["tuned"]["accuracy"]


def test_causal_lm_best_model_by_perplexity(workdir, tiny_llama):
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 60))
    recipe = sft_recipe(tiny_llama, data, max_steps=30, eval_strategy="steps", eval_steps=10,
                        load_best_model_at_end=True, metric_for_best_model="perplexity")
    result = run_cli("finetune", str(write_recipe(workdir / "sft.yaml", recipe)))
    assert result.exit_code == 0, result.output
    results = json.loads((workdir / "runs/sft/train_results.json").read_text())
    state = json.loads((workdir / "runs/sft" / results["best_checkpoint"] / "trainer_state.json").read_text())
    perplexities = [e["eval_perplexity"] for e in state["log_history"] if "eval_perplexity" in e]
    assert len(perplexities) >= 2 and results["best_eval_perplexity"] == min(perplexities)


def test_training_eval_without_eval_data_is_a_user_error(workdir, tiny_llama):
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 20))
    recipe = sft_recipe(tiny_llama, data, max_steps=2, eval_strategy="epoch")
    recipe["data"]["eval_fraction"] = 0
    result = run_cli("finetune", str(write_recipe(workdir / "sft.yaml", recipe)))
    assert result.exit_code == 2 and "no eval data" in result.output


def test_sft_eval_generates_and_scores_answers(workdir, tiny_llama):
    from rouge_score import rouge_scorer

    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 80))
    recipe = sft_recipe(tiny_llama, data, max_steps=60)
    recipe["eval"] = {"metrics": ["perplexity", "exact_match", "rouge", "chrf"]}
    recipe["generate"]["max_new_tokens"] = 24
    assert run_cli("finetune", str(write_recipe(workdir / "sft.yaml", recipe))).exit_code == 0

    report = eval_json("--limit", "5")
    assert set(report["tuned"]) == {"perplexity", "exact_match", "rouge1", "rouge2", "rougeL", "chrf"}
    # The pirate answers share "Arr, matey! ... Yo ho ho!": the tuned model must overlap far more.
    assert report["tuned"]["rouge1"] > report["base"]["rouge1"] + 0.1

    saved = json.loads((workdir / "runs/sft/eval_results.json").read_text())
    samples = saved["tuned_details"]["samples"]
    assert len(samples) == 5 and all(s["generated"] for s in samples)
    # With --limit 5 the saved samples are every scored answer: rouge_score directly must agree.
    scorer = rouge_scorer.RougeScorer(["rouge1"])
    direct = sum(scorer.score(s["reference"], s["generated"])["rouge1"].fmeasure for s in samples) / 5
    assert report["tuned"]["rouge1"] == pytest.approx(direct)

    human = run_cli("eval", "--limit", "3")
    assert "generated:" in human.stdout and "reference:" in human.stdout


def test_perplexity_is_exp_of_the_models_own_response_loss(workdir, tiny_llama):
    """Checked against transformers' own loss on the same example (labels masked the same way)."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcli.data.splits import load_splits
    from ftcli.data.tokenize import tokenize
    from ftcli.recipe import load_recipe

    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 20))
    path = write_recipe(workdir / "sft.yaml", sft_recipe(tiny_llama, data, max_steps=3))
    assert run_cli("finetune", str(path)).exit_code == 0
    report = eval_json("--limit", "1")

    recipe = load_recipe(path)
    row = load_splits(recipe).eval[:1]
    tokenizer = AutoTokenizer.from_pretrained(workdir / "runs/sft/model")
    example = tokenize("sft", row, tokenizer, recipe).examples[0]
    model = AutoModelForCausalLM.from_pretrained(workdir / "runs/sft/model")
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([example["labels"]])).loss
    assert report["tuned"]["loss"] == pytest.approx(loss.item(), rel=1e-4)
    assert report["tuned"]["perplexity"] == pytest.approx(math.exp(loss.item()), rel=1e-4)
