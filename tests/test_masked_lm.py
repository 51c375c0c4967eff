"""masked-lm: the masking collator (what is hidden, what the loss sees, seeded) and whole runs on a
pretrained tiny BERT and on a BERT built from its config."""

from __future__ import annotations

import pytest

import ftcli
from conftest import repo_rows, write_jsonl
from ftcli.errors import ModelError
from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.data.collators import PadCollator
from ftcli.recipe import parse_recipe

TINY_BERT = {"architecture": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def examples(tokenizer, n=64):
    texts = [r["text"] for r in repo_rows("reviews", n)]
    return [{"input_ids": ids, "labels": list(ids)} for ids in tokenizer(texts)["input_ids"]]


def collate(tokenizer, batch, probability=0.15, seed=0):
    from ftcli.data.collators import MaskingCollator

    return MaskingCollator(tokenizer, probability, seed)(batch)


def test_only_hidden_tokens_carry_labels(bert_tokenizer):
    import torch

    batch = examples(bert_tokenizer)
    original = PadCollator(bert_tokenizer.pad_token_id)(batch)["input_ids"]
    out = collate(bert_tokenizer, batch)
    hidden = out["labels"] != IGNORE_INDEX
    assert torch.equal(out["labels"][hidden], original[hidden])  # the loss asks for the real token
    special = torch.isin(original, torch.tensor(bert_tokenizer.all_special_ids))
    assert not (hidden & special).any()  # never [CLS], [SEP] or padding
    real = (out["attention_mask"].bool() & ~special).sum()
    share = hidden.sum() / real
    assert 0.11 < share < 0.19, share  # data.mlm_probability 0.15 of ~1,500 real tokens
    unchanged = original == out["input_ids"]
    assert unchanged[~hidden].all()  # only hidden positions are altered
    as_mask = (out["input_ids"][hidden] == bert_tokenizer.mask_token_id).float().mean()
    assert 0.7 < as_mask < 0.9, as_mask  # 80% [MASK]; the rest random or kept


def test_masks_are_seeded(bert_tokenizer):
    import torch

    batch = examples(bert_tokenizer, 16)
    a, b, c = collate(bert_tokenizer, batch, seed=1), collate(bert_tokenizer, batch, seed=1), \
        collate(bert_tokenizer, batch, seed=2)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_a_batch_always_hides_something(bert_tokenizer):
    # With nothing hidden the loss would be 0/0: a NaN that stops training.
    out = collate(bert_tokenizer, examples(bert_tokenizer, 1), probability=1e-6)
    assert (out["labels"] != IGNORE_INDEX).sum() == 1


def test_a_tokenizer_without_a_mask_token_is_refused(tiny_llama):
    from transformers import AutoTokenizer

    with pytest.raises(ModelError, match="masked-lm needs a tokenizer with a mask token"):
        collate(AutoTokenizer.from_pretrained(tiny_llama), [])


def test_examples_are_the_text_between_cls_and_sep(bert_tokenizer):
    from ftcli.data.tokenize import tokenize

    recipe = parse_recipe({"task": "masked-lm", "model": {"name_or_path": "m"},
                           "data": {"train": "d.jsonl", "max_length": 8}})
    out = tokenize("text", [{"text": "the film was great"}, {"text": "word " * 20}], bert_tokenizer, recipe)
    tokens = bert_tokenizer.convert_ids_to_tokens(out.examples[0]["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "great" in tokens
    assert len(out.examples[1]["input_ids"]) == 8 and out.truncated == 1


def mlm_run(workdir, model: dict, tokenizer: dict | None = None, **extra) -> dict:
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 200))
    raw = {"task": "masked-lm", "model": model, "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 48},
           "train": {"output_dir": str(workdir / "runs" / "mlm"), "max_steps": 40, "batch_size": 16,
                     "learning_rate": 1e-2, "logging_steps": 10, "save_total_limit": 1}, **extra}
    if tokenizer:
        raw["tokenizer"] = tokenizer
    run = ftcli.finetune(parse_recipe(raw))
    return ftcli.evaluate(run)


def test_masked_lm_fine_tunes_a_pretrained_bert(workdir, tiny_bert):
    results = mlm_run(workdir, {"name_or_path": str(tiny_bert)})
    base, tuned = results["base"], results["tuned"]
    print(f"tiny BERT masked-lm perplexity: base {base['perplexity']:.1f} -> tuned {tuned['perplexity']:.1f}")
    assert tuned["loss"] < base["loss"] - 0.5
    # The same masks every time: the comparison is of models, not of masking luck.
    assert ftcli.evaluate(results["run"])["base"] == base


def test_masked_lm_trains_a_bert_from_its_config(workdir):
    results = mlm_run(workdir, {"from_config": TINY_BERT}, {"train": {"vocab_size": 300}})
    base, tuned = results["base"], results["tuned"]
    print(f"BERT from config perplexity: untrained {base['perplexity']:.1f} -> trained {tuned['perplexity']:.1f}")
    assert 100 < base["perplexity"] < 900  # about uniform over 300 tokens
    assert tuned["perplexity"] < base["perplexity"] / 2


def test_masked_lm_with_lora(workdir, tiny_bert):
    results = mlm_run(workdir, {"name_or_path": str(tiny_bert)}, lora={"r": 4})
    assert results["tuned"]["loss"] < results["base"]["loss"]
