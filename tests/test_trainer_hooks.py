"""Where FtcliTrainer leans on transformers' Trainer (see training/trainer.py's docstring): each
assumption checked here, so that a transformers version that changes one fails loudly instead of
quietly training differently."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from ftcli.data.collators import PadCollator
from ftcli.training.trainer import FtcliTrainer, _declare_mean_loss


def _args(tmp_path, **extra):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, **extra)


def _rows(n: int = 8) -> list[dict]:
    return [{"input_ids": list(range(5, 8 + i % 5)), "labels": list(range(5, 8 + i % 5))} for i in range(n)]


def _parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


def test_trainer_still_has_the_methods_we_override_with_their_signatures():
    from transformers import Trainer

    empty = inspect.Parameter.empty
    assert _parameters(Trainer._get_train_sampler) == [("self", empty), ("train_dataset", None)]
    assert _parameters(Trainer._get_eval_sampler) == [("self", empty), ("eval_dataset", empty)]
    assert _parameters(Trainer.training_step) == [("self", empty), ("model", empty), ("inputs", empty),
                                                  ("num_items_in_batch", None)]
    assert _parameters(Trainer.evaluation_loop) == [
        ("self", empty), ("dataloader", empty), ("description", empty), ("prediction_loss_only", None),
        ("ignore_keys", None), ("metric_key_prefix", "eval")]
    assert _parameters(Trainer.compute_loss) == [("self", empty), ("model", empty), ("inputs", empty),
                                                 ("return_outputs", False), ("num_items_in_batch", None)]


def test_our_length_grouped_sampler_is_the_one_trainer_iterates_each_epoch(tiny_llama, tmp_path, monkeypatch):
    """The private `_get_train_sampler` is how the sampler gets in, and Trainer's per-epoch set_epoch
    must reach it (its order depends on the epoch)."""
    from transformers import AutoModelForCausalLM

    from ftcli.training.sampling import SeededLengthGroupedSampler

    epochs = []
    original = SeededLengthGroupedSampler.set_epoch
    monkeypatch.setattr(SeededLengthGroupedSampler, "set_epoch",
                        lambda self, epoch: (epochs.append(epoch), original(self, epoch))[1])
    iterated = []
    original_iter = SeededLengthGroupedSampler.__iter__
    monkeypatch.setattr(SeededLengthGroupedSampler, "__iter__",
                        lambda self: (iterated.append(self.epoch), original_iter(self))[1])
    trainer = FtcliTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama), train_dataset=_rows(),
                           data_collator=PadCollator(0), causal_lm=True,
                           args=_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=4,
                                      train_sampling_strategy="group_by_length", save_strategy="no"))
    trainer.train()
    assert iterated == [0, 1] and set(epochs) == {0, 1}


def test_trainer_honours_a_models_accepts_loss_kwargs(tiny_bert, tmp_path):
    """BERT's forward takes **kwargs, so Trainer would take its (averaged) loss as divided by
    num_items_in_batch and not divide it by gradient_accumulation_steps. Declared on the model (under
    PEFT too), Trainer reads it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, Trainer

    plain = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    assert Trainer(model=plain, args=_args(tmp_path)).model_accepts_loss_kwargs is True  # what it guesses

    declared = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    _declare_mean_loss(declared)
    assert Trainer(model=declared, args=_args(tmp_path)).model_accepts_loss_kwargs is False

    wrapped = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2),
                             LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    assert FtcliTrainer(model=wrapped, args=_args(tmp_path)).model_accepts_loss_kwargs is False
    assert Trainer.loss_is_scaled_for_ga is None  # so Trainer divides such a loss by the accumulation steps


def test_perplexity_comes_with_every_eval_loss(tiny_llama, tmp_path):
    """In the metrics evaluate() logs and returns (the ones best-model selection reads), and in
    predict()'s: computed in evaluation_loop, not by editing what log() is given."""
    from transformers import AutoModelForCausalLM

    trainer = FtcliTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama), data_collator=PadCollator(0),
                           causal_lm=True, args=_args(tmp_path, metric_for_best_model="perplexity",
                                                      greater_is_better=False))
    metrics = trainer.evaluate(_rows())
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert trainer.state.log_history[-1]["eval_perplexity"] == metrics["eval_perplexity"]
    assert trainer._determine_best_metric(metrics, trial=None) is True  # Trainer finds the metric by name
    assert trainer.state.best_metric == metrics["eval_perplexity"]
    predicted = trainer.predict(_rows()).metrics
    assert predicted["test_perplexity"] == pytest.approx(math.exp(predicted["test_loss"]))


def test_training_step_runs_forward_and_backward_of_exactly_its_inputs(tiny_llama, tmp_path):
    """What the token-bounded passes assume of Trainer.training_step: it backpropagates the inputs it is
    given (gradients are there when it returns) and returns the loss detached."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    trainer = FtcliTrainer(model=model, args=_args(tmp_path), causal_lm=True, micro_batch_tokens=None)
    batch = PadCollator(0)(_rows(2))
    loss = trainer.training_step(model, batch, torch.tensor(int((batch["labels"][:, 1:] != -100).sum())))
    assert not loss.requires_grad and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
