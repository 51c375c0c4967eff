"""`ftcli eval`'s perplexity is the one anyone gets from the saved run with plain transformers (issue 18).

For each task that reports it, a tiny run is trained, then its model/ is loaded with AutoTokenizer and
the task's Auto model class, and the loss is recomputed over the same eval texts the way README's
"Evaluation" section says ftcli counts it. The two must agree within 0.5%.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import transformers

import ftcli
from conftest import write_jsonl

TINY_LLAMA = {"architecture": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}
WORDS = "the a cat dog sat ran on under mat log big small red quiet loud river stone".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    # Some longer than max_length below, so truncation is part of what both sides count.
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def train_and_eval(workdir: Path, raw: dict) -> tuple[Path, float]:
    recipe = ftcli.load_recipe(write_recipe(workdir / "recipe.yaml", raw))
    run = ftcli.finetune(recipe)
    return run / "model", ftcli.evaluate(run, base=False)["tuned"]["perplexity"]


def write_recipe(path: Path, raw: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def perplexity(total_loss: float, tokens: int) -> float:
    return math.exp(total_loss / tokens)


def causal_text_perplexity(model_dir: Path, texts: list[str], max_length: int) -> float:
    """The documented count: tokenizer(text) (with the special tokens the saved tokenizer adds) + EOS,
    cut to max_length; every token after the first is predicted from the ones before it."""
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = (tok(text)["input_ids"] + [tok.eos_token_id])[:max_length]
            ids = torch.tensor([ids])
            loss = model(input_ids=ids, labels=ids).loss.item()
            total += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return perplexity(total, count)


def plain_text_run(workdir: Path, task: str, model: Path, seed: int, max_length: int) -> tuple[Path, float]:
    """A 10-step run of `model` on 200 plain-text rows (eval: 30 more, `sentences(30, seed + 1)`)."""
    write_jsonl(workdir / "train.jsonl", [{"text": t} for t in sentences(200, seed)])
    write_jsonl(workdir / "eval.jsonl", [{"text": t} for t in sentences(30, seed + 1)])
    return train_and_eval(workdir, {
        "task": task, "model": {"name_or_path": str(model)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": max_length},
        "train": {"output_dir": f"runs/{task}", "max_steps": 10, "batch_size": 16, "report_to": ["none"]}})


def assert_close(ours: float, theirs: float) -> None:
    print(f"ftcli eval {ours:.4f}, plain transformers {theirs:.4f}")
    assert ours == pytest.approx(theirs, rel=0.005)


def test_a_model_trained_from_scratch_with_its_own_tokenizer(workdir):
    """The issue's case: from_config + a trained BPE vocabulary, plain text. ftcli trains each text as
    BOS + text + EOS; the saved tokenizer adds that BOS itself, so tokenizer(text) + EOS is the same."""
    write_jsonl(workdir / "train.jsonl", [{"text": t} for t in sentences(300, 0)])
    write_jsonl(workdir / "eval.jsonl", [{"text": t} for t in sentences(40, 1)])
    model_dir, ours = train_and_eval(workdir, {
        "task": "causal-lm", "model": {"from_config": TINY_LLAMA}, "tokenizer": {"train": {"vocab_size": 200}},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": 24},
        "train": {"output_dir": "runs/pt", "max_steps": 30, "batch_size": 16, "learning_rate": 3e-3,
                  "report_to": ["none"]}})
    texts = sentences(40, 1)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert tok("a cat")["input_ids"][0] == tok.bos_token_id  # the BOS training gave every text
    assert_close(ours, causal_text_perplexity(model_dir, texts, 24))


def test_a_pretrained_model_on_plain_text(workdir, tiny_llama_plain):
    model_dir, ours = plain_text_run(workdir, "causal-lm", tiny_llama_plain, seed=2, max_length=20)
    assert_close(ours, causal_text_perplexity(model_dir, sentences(30, 3), 20))


def test_sft_chats_count_the_replies_as_the_chat_template_writes_them(workdir, tiny_llama):
    """SFT: the reply and the template's end-of-turn markup after the rendered prompt, nothing else."""
    pairs = [(f"say {a} {b}", f"{b} {a} {b}") for a in WORDS for b in WORDS[:6]]
    write_jsonl(workdir / "train.jsonl", [{"prompt": p, "response": r} for p, r in pairs[:80]])
    write_jsonl(workdir / "eval.jsonl", [{"prompt": p, "response": r} for p, r in pairs[80:100]])
    model_dir, ours = train_and_eval(workdir, {
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
        "train": {"output_dir": "runs/sft", "max_steps": 10, "batch_size": 16, "report_to": ["none"]}})
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, reply in pairs[80:100]:
            chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
            head = tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(chat, tokenize=False)
            ids = tok(full, add_special_tokens=False)["input_ids"]
            labels = list(ids)
            labels[:len(tok(head, add_special_tokens=False)["input_ids"])] = [-100] * len(
                tok(head, add_special_tokens=False)["input_ids"])
            n = sum(label != -100 for label in labels[1:])
            total += model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item() * n
            count += n
    assert_close(ours, perplexity(total, count))


def test_masked_lm_counts_the_hidden_tokens(workdir, tiny_bert):
    """masked-lm: the model's own loss on the eval examples ftcli masked (seeded per example), with
    the saved tokenizer and model."""
    from ftcli.data.tokenize import tokenize
    from ftcli.recipe import load_run_recipe

    model_dir, ours = plain_text_run(workdir, "masked-lm", tiny_bert, seed=4, max_length=24)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    recipe = load_run_recipe(model_dir.parent)
    examples = tokenize("text", [{"text": t} for t in sentences(30, 5)], tok, recipe, split="eval").examples
    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            labels = torch.tensor([e["labels"]])
            n = int((labels != -100).sum())
            total += model(input_ids=torch.tensor([e["input_ids"]]), labels=labels).loss.item() * n
            count += n
    assert_close(ours, perplexity(total, count))


def test_seq2seq_counts_the_target_tokens(workdir, tiny_t5):
    pairs = [(f"{a} {b}", f"{b} {a}") for a in WORDS for b in WORDS]
    write_jsonl(workdir / "train.jsonl", [{"prompt": p, "response": r} for p, r in pairs[:150]])
    write_jsonl(workdir / "eval.jsonl", [{"prompt": p, "response": r} for p, r in pairs[150:180]])
    model_dir, ours = train_and_eval(workdir, {
        "task": "seq2seq", "model": {"name_or_path": str(tiny_t5)},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "source_prefix": "swap: "},
        "train": {"output_dir": "runs/s2s", "max_steps": 10, "batch_size": 16, "report_to": ["none"]},
        "eval": {"metrics": ["perplexity"]}})
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for source, target in pairs[150:180]:
            ids = torch.tensor([tok("swap: " + source)["input_ids"]])
            labels = torch.tensor([tok(text_target=target)["input_ids"]])
            total += model(input_ids=ids, labels=labels).loss.item() * labels.shape[1]
            count += labels.shape[1]
    assert_close(ours, perplexity(total, count))
