"""Speed and memory levers keep the maths: the LM head on label positions only, token-bounded passes,
padding-free packing and length-grouped batches each give the loss (and gradients) of the plain path."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.training.lm_loss import causal_lm_loss, head_on_label_positions
from ftcli.training.micro_batches import split_by_tokens
from ftcli.data.collators import PackingCollator
from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.data.collators import PadCollator

PAD = 0


def tiny_llama_model(attn: str = "sdpa", tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=PAD, tie_word_embeddings=tie, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def examples(lengths=(9, 17, 5, 12), prompt=3) -> list[dict]:
    """Rows of random tokens; the first `prompt` tokens of each are not trained on (SFT-style)."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for n in lengths:
        ids = torch.randint(1, 97, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return rows


def reference_loss(model, batch, num_items=None):
    """The model's own loss: the LM head on every position, transformers' shift and reduction."""
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    return model(**batch, **kwargs).loss


def selective_loss(model, batch, num_items=None):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with head_on_label_positions(model, batch["labels"]):
        outputs = model(**inputs)
    return causal_lm_loss(outputs, batch["labels"], num_items), outputs.logits


def grads(model, loss) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


# ------------------------------------------------------------------ LM head on label positions only

@pytest.mark.parametrize("num_items", [None, 40])
def test_head_on_label_positions_gives_the_full_loss_and_gradients(num_items):
    model = tiny_llama_model()
    batch = PadCollator(PAD)(examples())
    full = reference_loss(model, batch, num_items)
    ours, logits = selective_loss(model, batch, num_items)
    label_positions = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert logits.shape == (label_positions, 97)  # the head ran on K rows, not B × T
    assert label_positions < batch["input_ids"].numel() / 2
    assert ours.item() == pytest.approx(full.item(), rel=1e-6)
    for a, b in zip(grads(model, full), grads(model, ours)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_head_on_label_positions_with_an_untied_head_and_lora():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama_model(tie=False),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    batch = PadCollator(PAD)(examples())
    full = reference_loss(model, batch, 30)
    ours, logits = selective_loss(model, batch, 30)
    assert logits.dim() == 2
    assert ours.item() == pytest.approx(full.item(), rel=1e-6)


def test_the_loss_selects_itself_when_the_head_ran_everywhere():
    # A model that bypasses its output-embedding module still gets the right loss.
    model = tiny_llama_model()
    batch = PadCollator(PAD)(examples())
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert causal_lm_loss(outputs, batch["labels"]).item() == pytest.approx(
        reference_loss(model, batch).item(), rel=1e-6)


# ------------------------------------------------------------------ token-bounded passes

def test_split_by_tokens_covers_every_row_once_within_the_budget():
    batch = PadCollator(PAD)(examples(lengths=(30, 4, 18, 9, 25, 7)))
    parts = split_by_tokens(batch, 48)
    seen = []
    for part in parts:
        rows, width = part["input_ids"].shape
        assert rows * width <= 48 or rows == 1
        assert part["attention_mask"][:, -1].any()  # cut to its own longest row, no more
        for r in range(rows):
            n = int(part["attention_mask"][r].sum())
            seen.append(part["input_ids"][r, :n].tolist())
            assert part["labels"][r, :n].tolist() == next(
                batch["labels"][i, :n].tolist() for i in range(6) if batch["input_ids"][i, :n].tolist() == seen[-1])
    assert sorted(seen) == sorted(batch["input_ids"][i, :int(batch["attention_mask"][i].sum())].tolist()
                                  for i in range(6))
    assert len(parts) > 1
    assert split_by_tokens(batch, 10_000) == [batch]


def test_passes_add_up_to_the_whole_batch_gradient():
    model = tiny_llama_model()
    batch = PadCollator(PAD)(examples(lengths=(30, 4, 18, 9, 25, 7)))
    num_items = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    whole = grads(model, reference_loss(model, batch, num_items))
    model.zero_grad()
    total = 0.0
    for part in split_by_tokens(batch, 48):
        loss = reference_loss(model, part, num_items)
        loss.backward()
        total += loss.item()
    assert total == pytest.approx(reference_loss(model, batch, num_items).item(), rel=1e-5)
    for a, p in zip(whole, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ packing

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_the_padded_loss(attn):
    model = tiny_llama_model(attn)
    rows = examples()
    padded, packed = PadCollator(PAD)(rows), PackingCollator()(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert "attention_mask" not in packed and packed["use_cache"] is False  # boundaries come from position_ids
    num_items = int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert int((packed["labels"][:, 1:] != IGNORE_INDEX).sum()) == num_items
    assert reference_loss(model, packed, num_items).item() == pytest.approx(
        reference_loss(model, padded, num_items).item(), rel=1e-5)


def test_packed_examples_do_not_see_each_other():
    model = tiny_llama_model()
    rows = examples()
    changed = [dict(r) for r in rows]
    changed[0] = {"input_ids": [5] * len(rows[0]["input_ids"]), "labels": rows[0]["labels"]}
    a, b = (model(**{k: v for k, v in PackingCollator()(r).items() if k != "labels"}).logits for r in (rows, changed))
    first = len(rows[0]["input_ids"])
    assert not torch.allclose(a[0, :first], b[0, :first])  # the changed example's own logits move ...
    torch.testing.assert_close(a[0, first:], b[0, first:])  # ... and no other example's


# ------------------------------------------------------------------ through ftcli finetune

runner = CliRunner()


def finetune(workdir, tiny_llama, name: str, data: dict | None = None, **train) -> dict:
    rows = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 48))
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
              "data": {"train": str(rows), "eval_fraction": 0, "max_length": 96, **(data or {})},
              "train": {"output_dir": f"runs/{name}", "max_steps": 6, "batch_size": 8, "learning_rate": 5e-3,
                        "logging_steps": 1, **train}}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = runner.invoke(app, ["finetune", str(path)])
    assert result.exit_code == 0, result.output
    state = json.loads(max((workdir / f"runs/{name}").glob("checkpoint-*/trainer_state.json")).read_text())
    return {"losses": [e["loss"] for e in state["log_history"] if "loss" in e],
            **json.loads((workdir / f"runs/{name}/train_results.json").read_text())}


def test_finetune_with_passes_or_packing_trains_the_same(workdir, tiny_llama):
    plain = finetune(workdir, tiny_llama, "plain", micro_batch_tokens=None)
    passes = finetune(workdir, tiny_llama, "passes", micro_batch_tokens=64)
    packed = finetune(workdir, tiny_llama, "packed", data={"packing": True}, micro_batch_tokens=None)
    packed_passes = finetune(workdir, tiny_llama, "packed-passes", data={"packing": True}, micro_batch_tokens=64)
    assert len(plain["losses"]) == 6
    assert passes["losses"] == pytest.approx(plain["losses"], rel=1e-3)
    assert packed["losses"] == pytest.approx(plain["losses"], rel=1e-3)
    assert packed_passes["losses"] == pytest.approx(plain["losses"], rel=1e-3)
    assert plain["losses"][-1] < plain["losses"][0]  # and it learns


def test_length_grouping_pads_less_than_random_order(workdir, tiny_llama, monkeypatch):
    widths = {}
    original = PadCollator.__call__

    def spy(self, rows):
        batch = original(self, rows)
        widths.setdefault(current, []).append(batch["attention_mask"].numel() - int(batch["attention_mask"].sum()))
        return batch

    monkeypatch.setattr(PadCollator, "__call__", spy)
    for current in ("random", "grouped"):
        # Trainer groups within windows of 4 batches (50 at most) here: 48 rows, batches of 4.
        finetune(workdir, tiny_llama, current, group_by_length=current == "grouped", micro_batch_tokens=None,
                 batch_size=4)
    assert sum(widths["grouped"]) < sum(widths["random"]) / 2


def test_length_grouped_order_depends_on_seed_and_epoch_only():
    from ftcli.training.sampling import SeededLengthGroupedSampler

    lengths = [(i * 37) % 101 + 1 for i in range(400)]
    first = SeededLengthGroupedSampler(lengths, 8, seed=3)
    again = SeededLengthGroupedSampler(lengths, 8, seed=3)
    torch.manual_seed(123)  # the global RNG plays no part (a resumed run's differs)
    assert list(first) == list(again) and sorted(first) == list(range(400))
    order = list(first)
    first.set_epoch(1)
    assert list(first) != order
    spread = sum(max(lengths[i] for i in order[b:b + 8]) - min(lengths[i] for i in order[b:b + 8])
                 for b in range(0, 400, 8))
    assert spread < 50 * 10  # batches of near-equal lengths (random order: ~70 apart per batch)


def test_packing_is_refused_outside_causal_lm():
    from ftcli.errors import RecipeError
    from ftcli.recipe import parse_recipe

    with pytest.raises(RecipeError, match="data.packing is for causal-lm"):
        parse_recipe({"task": "sequence-classification", "model": {"name_or_path": "m"},
                      "data": {"train": "t.jsonl", "packing": True}})


# ------------------------------------------------------------------ LoRA dropout

def test_fast_dropout_keeps_the_expected_share_scaled_and_reproducible():
    from ftcli.modeling.fast_dropout import FastDropout

    drop = FastDropout(0.1).train()
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(5)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))  # nn.Dropout's scaling
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.9)  # gradient flows only where kept
    torch.manual_seed(5)
    assert torch.equal(drop(x), y)  # torch's seed decides the mask
    assert not torch.equal(drop(x), y)  # and the stream moves on
    assert torch.equal(drop.eval()(x), x)


def test_lora_dropouts_are_swapped_and_the_adapter_is_unchanged(tmp_path):
    from peft import LoraConfig, get_peft_model

    from ftcli.modeling.fast_dropout import FastDropout, use_fast_lora_dropout

    model = get_peft_model(tiny_llama_model(), LoraConfig(r=4, lora_dropout=0.05, target_modules="all-linear",
                                                          task_type="CAUSAL_LM"))
    assert use_fast_lora_dropout(model) == 2 * 7  # every adapter of both layers
    drops = [m for m in model.modules() if isinstance(m, FastDropout)]
    assert len(drops) == 14 and all(d.p == 0.05 for d in drops)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["lora_dropout"] == 0.05


# ------------------------------------------------------------------ passes through FtcliTrainer

def _trainer(model, tokens, tmp_path):
    from transformers import TrainingArguments

    from ftcli.training.trainer import FtcliTrainer

    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    return FtcliTrainer(model=model, args=args, causal_lm=True, micro_batch_tokens=tokens)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_trainer_passes_give_the_loss_and_gradients_of_one_pass(tmp_path, monkeypatch, packed):
    """FtcliTrainer.training_step runs a batch in passes of at most 40 tokens, each its own forward and
    backward (Trainer's training_step, once per pass), and ends with the gradients of one pass. A packed
    row is cut between examples: every pass starts an example at position 0."""
    from transformers import Trainer

    rows = examples(lengths=(30, 4, 18, 9, 25, 7))
    batch = (PackingCollator() if packed else PadCollator(PAD))(rows)
    num_items = torch.tensor(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()))

    whole_model = tiny_llama_model()
    whole_loss = _trainer(whole_model, None, tmp_path).training_step(whole_model, dict(batch), num_items)
    whole = [p.grad.clone() for p in whole_model.parameters()]

    passes, original = [], Trainer.training_step

    def one_pass(self, model, inputs, num_items_in_batch=None):
        passes.append(inputs)
        loss = original(self, model, inputs, num_items_in_batch)
        assert all(p.grad is not None for p in model.parameters())  # backward ran within the pass
        assert not loss.requires_grad  # and nothing of its graph is kept for later
        return loss

    monkeypatch.setattr(Trainer, "training_step", one_pass)
    model = tiny_llama_model()
    loss = _trainer(model, 40, tmp_path).training_step(model, dict(batch), num_items)

    assert len(passes) > 1
    for part in passes:
        assert part["input_ids"].numel() <= 40 or part["input_ids"].shape[0] == 1
        if packed:
            assert part["position_ids"][0, 0] == 0 and "attention_mask" not in part
    assert sum(p["input_ids"].numel() for p in passes) <= batch["input_ids"].numel()
    if packed:  # every token, in order, exactly once
        assert torch.equal(torch.cat([p["input_ids"] for p in passes], dim=1), batch["input_ids"])
    assert loss.item() == pytest.approx(whole_loss.item(), rel=1e-5)
    for a, p in zip(whole, model.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-6)


def test_split_packed_cuts_only_between_examples_within_the_budget():
    from ftcli.training.micro_batches import split_packed

    packed = PackingCollator()(examples(lengths=(30, 4, 18, 9, 25, 7, 50)))
    parts = split_packed(packed, 40)
    assert [p["input_ids"].shape[1] for p in parts] == [34, 27, 32, 50]  # 50 > 40: a pass of its own
    for part in parts:
        assert part["use_cache"] is False and part["position_ids"][0, 0] == 0
    for key in ("input_ids", "labels", "position_ids"):
        assert torch.equal(torch.cat([p[key] for p in parts], dim=1), packed[key])
    assert split_packed(packed, 10_000) == [packed]
    # A row whose examples' first tokens are targets would lose one at each cut: kept whole.
    unmarked = dict(packed, labels=packed["input_ids"].clone())
    assert split_packed(unmarked, 40) == [unmarked]


def test_micro_batch_tokens_auto_means_passes_only_where_they_work(tmp_path):
    from transformers import TrainingArguments

    from ftcli.recipe import TrainSection
    from ftcli.recipe.train_section import MICRO_BATCH_TOKENS
    from ftcli.training.trainer import FtcliTrainer

    assert TrainSection().micro_batch_tokens == "auto"
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    for causal_lm, setting, expected in [(True, "auto", MICRO_BATCH_TOKENS), (False, "auto", None),
                                         (True, None, None), (True, 64, 64)]:
        trainer = FtcliTrainer(model=tiny_llama_model(), args=args, causal_lm=causal_lm, micro_batch_tokens=setting)
        assert trainer.micro_batch_tokens == expected, (causal_lm, setting)


def test_micro_batch_tokens_is_refused_where_passes_cannot_work():
    from ftcli.errors import RecipeError
    from ftcli.recipe import parse_recipe

    def recipe(task="causal-lm", distributed=None, **train):
        doc = {"task": task, "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "train": train}
        return parse_recipe({**doc, "distributed": distributed} if distributed else doc)

    for task in ("sequence-classification", "seq2seq", "masked-lm"):
        with pytest.raises(RecipeError, match=f"train.micro_batch_tokens is for causal-lm; task {task}"):
            recipe(task, micro_batch_tokens=256)
        assert recipe(task).train.micro_batch_tokens == "auto" and recipe(task, micro_batch_tokens=None)
    with pytest.raises(RecipeError, match="micro_batch_tokens cannot work under distributed.deepspeed"):
        recipe(distributed={"deepspeed": "recipes/deepspeed/zero2.json"}, micro_batch_tokens=512)
    with pytest.raises(RecipeError, match="on_nonfinite_loss: skip cannot skip an optimizer step under"):
        recipe(distributed={"deepspeed": {"zero_optimization": {"stage": 2}}}, on_nonfinite_loss="skip")
    assert recipe(distributed={"deepspeed": "recipes/deepspeed/zero2.json"}).train.micro_batch_tokens == "auto"
    for bad in (0, -3, True, "512", "Auto"):
        with pytest.raises(RecipeError, match="expected a positive number of tokens, auto or null"):
            recipe(micro_batch_tokens=bad)
