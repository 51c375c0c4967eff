"""The one Trainer every run trains with: transformers' Trainer plus a guard against non-finite loss,
eval perplexity, and for causal LMs the exact speed and memory levers (the LM head only on label
positions, token-bounded passes, seeded length grouping).

How it leans on transformers 5 (tests/test_trainer_hooks.py fails loudly when a version changes one):
- public hooks: `compute_loss`, `training_step` and `evaluation_loop` (documented as overridable),
  a TrainerCallback (`SkipNonfiniteSteps`), and the model's own `accepts_loss_kwargs` attribute, which
  Trainer reads in `__init__` to decide how the loss is scaled.
- `training_step` is called once per token-bounded pass, under accelerate's public `no_sync` for all
  but the last. That assumes what the base class does today: forward and backward of exactly the
  inputs given, the loss divided by the whole batch's `num_items_in_batch` (our causal-LM loss), and
  the detached loss returned.
- two private methods. `_get_train_sampler`: Trainer has no public way to be given a train sampler (its
  own group_by_length sampler draws its shuffle from the global RNG, which a resumed run does not
  reproduce). `_get_eval_sampler`: under group_by_length Trainer also groups eval batches, from an
  `input_ids` column that preference and reward pairs do not have (it raises); those come in length
  order already, so they are read in order.
"""

from __future__ import annotations

import contextlib
import math

from transformers import Trainer

from ftcli.errors import TrainingFailed, UserError
from ftcli.progress import log
from ftcli.recipe.train_section import MICRO_BATCH_TOKENS
from ftcli.training.callbacks import SkipNonfiniteSteps
from ftcli.training.lm_loss import causal_lm_loss, head_on_label_positions
from ftcli.training.micro_batches import split_passes
from ftcli.training.sampling import SeededLengthGroupedSampler


def _declare_mean_loss(model) -> None:
    """Trainer takes a model whose forward has **kwargs to divide its loss by num_items_in_batch, and
    then skips dividing by gradient_accumulation_steps. T5, BART, BERT's masked-LM and classification
    heads take **kwargs but average their loss themselves: 2 accumulated batches would count double.
    A model says so with `accepts_loss_kwargs = False` (as several transformers models do), which
    Trainer honours. Our causal-LM loss gets num_items_in_batch as compute_loss_func all the same."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT
    base.accepts_loss_kwargs = False


class FtcliTrainer(Trainer):
    """Trainer plus: a non-finite loss stops training (default) or skips the optimizer step; eval
    perplexity; and for causal LMs the LM head only on label positions (`lm_loss`) and batches run in
    passes of at most `micro_batch_tokens` tokens (`micro_batches`). Both give the loss and gradients
    of the plain path."""

    # Eval perplexity beside eval loss: a language model's. A preference loss has none.
    reports_perplexity = True

    def __init__(self, *args, on_nonfinite_loss: str = "stop", causal_lm: bool = False,
                 micro_batch_tokens: int | str | None = "auto", lengths: list[int] | None = None, **kwargs):
        self.example_lengths = lengths  # for length grouping, when the examples have no input_ids
        if causal_lm:
            kwargs["compute_loss_func"] = causal_lm_loss
        model = kwargs.get("model", args[0] if args else None)
        if model is not None:
            _declare_mean_loss(model)
        self.skip_steps = SkipNonfiniteSteps(log) if on_nonfinite_loss == "skip" else None
        if self.skip_steps is not None:
            # First of the callbacks given (after Trainer's own flow and reporting ones), so that it has
            # put the learning rate back before any other reads it at the end of a skipped step.
            kwargs["callbacks"] = [self.skip_steps, *(kwargs.get("callbacks") or [])]
        super().__init__(*args, **kwargs)
        if self.skip_steps is not None and self.is_deepspeed_enabled:  # DeepSpeed from a launcher
            raise UserError("train.on_nonfinite_loss: skip cannot skip an optimizer step under DeepSpeed, "
                            "which steps inside backward", hint="set train.on_nonfinite_loss: stop")
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        self.causal_lm = causal_lm
        self.micro_batch_tokens = self._pass_budget(micro_batch_tokens)

    def _pass_budget(self, setting: int | str | None) -> int | None:
        """Tokens per forward/backward pass, or None for whole batches. DeepSpeed steps its optimizer
        inside every backward, so passes cannot add up there: `auto` gives whole batches, a number is
        refused (the recipe check catches distributed.deepspeed; this, DeepSpeed from a launcher)."""
        if setting == "auto":
            return MICRO_BATCH_TOKENS if self.causal_lm and not self.is_deepspeed_enabled else None
        if setting and self.is_deepspeed_enabled:
            raise UserError(f"train.micro_batch_tokens: {setting} cannot work under DeepSpeed, which steps the "
                            "optimizer inside every backward pass", hint="set train.micro_batch_tokens: auto")
        return setting

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        # Perplexity beside every eval loss, in the metrics evaluate() logs and returns, and so among
        # those Trainer picks the best model by (metric_for_best_model: perplexity).
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        loss = output.metrics.get(f"{metric_key_prefix}_loss")
        if loss is not None and self.reports_perplexity:
            output.metrics[f"{metric_key_prefix}_perplexity"] = math.exp(min(loss, 700))
        return output

    def _get_train_sampler(self, train_dataset=None):
        # Private (see the module docstring): the one way to hand Trainer our sampler.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = self.example_lengths
        if lengths is None and isinstance(dataset, list):
            lengths = [len(e["input_ids"]) for e in dataset]
        if self.args.train_sampling_strategy != "group_by_length" or lengths is None:
            return super()._get_train_sampler(train_dataset)

        # Group by the global batch: each process takes its slice of consecutive batches, so N processes
        # see the batches one process would with an N times larger batch.
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return SeededLengthGroupedSampler(lengths, global_batch,
                                          self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def _get_eval_sampler(self, eval_dataset):
        # Private (see the module docstring). Eval order never changes a metric, only the padding.
        if self.args.train_sampling_strategy == "group_by_length" and eval_dataset is not None \
                and len(eval_dataset) and "input_ids" not in eval_dataset[0]:
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        passes = self._passes(inputs, num_items_in_batch)
        if len(passes) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        total = 0
        for i, part in enumerate(passes):
            # Gradients add up across passes; under DDP only the last pass synchronises them.
            sync = i == len(passes) - 1
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(model):
                total = total + super().training_step(model, part, num_items_in_batch)
        return total

    def _passes(self, inputs: dict, num_items_in_batch) -> list[dict]:
        # Splitting is exact only when each pass's loss is divided by the whole batch's label count:
        # our causal-LM loss, given num_items_in_batch.
        if not self.micro_batch_tokens or num_items_in_batch is None or not self.causal_lm:
            return [inputs]
        return split_passes(inputs, self.micro_batch_tokens)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        if self.causal_lm and "labels" in inputs:
            with head_on_label_positions(self.model, inputs["labels"]):
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        else:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = result[0] if return_outputs else result
        if torch.isfinite(loss.detach()).all() or not model.training:
            return result
        step = self.state.global_step + 1
        if self.on_nonfinite_loss == "stop":
            raise TrainingFailed(f"non-finite loss ({loss.item()}) at step {step}",
                                 hint="lower train.learning_rate, check the data, or set "
                                      "train.on_nonfinite_loss: skip")
        # Skip: a zero loss that still touches every trainable weight, so backward yields zero
        # gradients (not NaN); the whole optimizer step is then skipped (SkipNonfiniteSteps).
        self.skipped_batches += 1
        self.skip_steps.nonfinite = True
        zero = sum((p * 0).sum() for p in model.parameters() if p.requires_grad)
        return (zero, result[1]) if return_outputs else zero
