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
    """Training examples: token ids only, the collator hides tokens (eval examples carry their masks)."""
    texts = [r["text"] for r in repo_rows("reviews", n)]
    return [{"input_ids": ids} for ids in tokenizer(texts)["input_ids"]]


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


# ------------------------------------------------------------------ eval masks: fixed per example

def mlm_recipe(data, seed=42, **train):
    return parse_recipe({"task": "masked-lm", "model": {"name_or_path": str(data.parent / "bert")},
                         "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 48, "cache": False},
                         "train": {"seed": seed, "report_to": ["none"], **train}})


@pytest.fixture
def mlm_data(workdir, tiny_bert):
    (workdir / "bert").symlink_to(tiny_bert)
    return write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 80))


def prepared(recipe):
    from ftcli.data.prepare import prepare_splits
    from ftcli.data.splits import load_splits
    from ftcli.modeling.load import load_tokenizer

    tokenizer = load_tokenizer(recipe.model)
    splits = load_splits(recipe)
    return splits, tokenizer, *prepare_splits(recipe, splits, tokenizer, None)


def per_example(batches) -> dict:
    """{original position: (input ids, labels)} of padded batches, padding cut off."""
    out = {}
    for positions, batch in batches:
        for row, position in enumerate(positions):
            n = int(batch["attention_mask"][row].sum())
            out[position] = (batch["input_ids"][row, :n].tolist(), batch["labels"][row, :n].tolist())
    return out


def test_eval_masks_are_fixed_per_example_whatever_the_batches(mlm_data, bert_tokenizer):
    from ftcli.data.collators import data_collator

    recipe = mlm_recipe(mlm_data)
    _, tokenizer, train, ev = prepared(recipe)
    collate = data_collator(recipe, tokenizer)
    order = list(range(len(ev.examples)))
    in_fours = [(order[i:i + 4], collate([ev.examples[j] for j in order[i:i + 4]])) for i in range(0, len(order), 4)]
    backwards = order[::-1]
    in_sevens = [(backwards[i:i + 7], collate([ev.examples[j] for j in backwards[i:i + 7]]))
                 for i in range(0, len(order), 7)]
    assert per_example(in_fours) == per_example(in_sevens)  # the same masks in any batch, any order
    hidden = sum(label != IGNORE_INDEX for _, labels in per_example(in_fours).values() for label in labels)
    tokens = sum(len(e["input_ids"]) - 2 for e in ev.examples)  # less [CLS] and [SEP]
    assert 0.1 < hidden / tokens < 0.25, hidden / tokens
    again = prepared(mlm_recipe(mlm_data))[3]
    assert again.examples == ev.examples  # another run (or a resumed one) prepares the same masks
    assert prepared(mlm_recipe(mlm_data, seed=7))[3].examples != ev.examples  # seeded by train.seed
    assert all("labels" not in e for e in train.examples)  # training masks stay the collator's, new per batch


def test_ftcli_eval_scores_the_masks_training_evaluated_on(mlm_data, monkeypatch):
    import ftcli.evaluation.scoring as scoring

    recipe = mlm_recipe(mlm_data)
    splits, tokenizer, _, ev = prepared(recipe)
    scored = []
    monkeypatch.setattr(scoring, "_score_loss", lambda model, examples, *args, **kwargs: scored.append(examples) or {})
    scoring.score_model(recipe, "text", recipe.model, tokenizer, splits.eval, None)
    assert scored == [ev.examples] and any(IGNORE_INDEX in e["labels"] for e in ev.examples)


def test_two_evaluations_of_the_same_model_give_the_same_loss(mlm_data, tmp_path):
    from ftcli.data.collators import data_collator
    from ftcli.modeling.load import load_model
    from ftcli.training.arguments import training_arguments
    from ftcli.training.trainer import FtcliTrainer

    recipe = mlm_recipe(mlm_data, eval_batch_size=4)

    def trainer():
        from transformers import set_seed

        _, tokenizer, train, ev = prepared(recipe)
        set_seed(0)  # the MLM head the tiny encoder lacks is initialised alike
        model = load_model(recipe.task, recipe.model, None, tokenizer.pad_token_id, tokenizer, recipe.train.seed)
        return FtcliTrainer(model=model, args=training_arguments(recipe, tmp_path / "run"),
                            train_dataset=train.examples, eval_dataset=ev.examples,
                            data_collator=data_collator(recipe, tokenizer))

    first = trainer()
    losses = [first.evaluate()["eval_loss"] for _ in range(3)]
    fresh = trainer().evaluate()["eval_loss"]  # a new process, as after a resume
    assert losses == [fresh] * 3, losses


def test_a_resumed_run_evaluates_on_the_same_masks(mlm_data, monkeypatch):
    import shutil

    from ftcli.training.trainer import FtcliTrainer

    evaluations = {}  # step -> the eval batches (input ids, labels) of that evaluation
    real = FtcliTrainer.prediction_step

    def recording(self, model, inputs, *args, **kwargs):
        batches = evaluations.setdefault(self.state.global_step, [])
        batches.append((inputs["input_ids"].tolist(), inputs["labels"].tolist()))
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(FtcliTrainer, "prediction_step", recording)
    recipe = mlm_recipe(mlm_data, output_dir=str(mlm_data.parent / "run"), max_steps=4, batch_size=8,
                        eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=3, logging_steps=2)
    run = ftcli.finetune(recipe)
    assert sorted(evaluations) == [2, 4] and evaluations[2] == evaluations[4]
    first = evaluations.pop(4)
    for leftover in (run / "checkpoint-4", run / "model"):
        shutil.rmtree(leftover)  # as if stopped after checkpoint-2
    (run / "train_results.json").unlink()
    ftcli.finetune(recipe)
    assert sorted(evaluations) == [2, 4]  # step 2 from the first run, step 4 after resuming at 2
    assert evaluations[4] == first


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
