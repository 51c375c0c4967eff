"""The one Trainer every run trains with: transformers' Trainer plus a guard against non-finite loss,
eval perplexity, and for causal LMs the exact speed and memory levers (the LM head only on label
positions, token-bounded passes, seeded length grouping)."""

from __future__ import annotations

import contextlib
import math

from transformers import Trainer

from ftcli.errors import TrainingFailed
from ftcli.training.lm_loss import causal_lm_loss, head_on_label_positions
from ftcli.training.micro_batches import split_by_tokens
from ftcli.training.sampling import SeededLengthGroupedSampler


class FtcliTrainer(Trainer):
    """Trainer plus: a non-finite loss stops training (default) or skips the batch; eval perplexity;
    and for causal LMs the LM head only on label positions (`lm_loss`) and batches run in passes of at
    most `micro_batch_tokens` tokens (`micro_batches`). Both give the loss and gradients of the plain path."""

    def __init__(self, *args, on_nonfinite_loss: str = "stop", causal_lm: bool = False,
                 micro_batch_tokens: int | None = None, **kwargs):
        if causal_lm:
            kwargs["compute_loss_func"] = causal_lm_loss
        super().__init__(*args, **kwargs)
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        self.causal_lm = causal_lm
        self.micro_batch_tokens = micro_batch_tokens
        # Trainer assumes a model whose forward takes **kwargs divides its loss by num_items_in_batch,
        # and then skips dividing by gradient_accumulation_steps. T5, BART, BERT's masked-LM and
        # classification heads take **kwargs but average their loss themselves: 2 accumulated batches
        # would count double. Only our causal-LM loss (`lm_loss`) divides by num_items_in_batch.
        self.model_accepts_loss_kwargs = False

    def log(self, logs: dict, *args, **kwargs) -> None:
        # Perplexity beside every eval loss. `logs` is the very dict Trainer then uses to pick the
        # best model, so metric_for_best_model: perplexity works too.
        if "eval_loss" in logs:
            logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 700))
        super().log(logs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, list):
            return super()._get_train_sampler(train_dataset)

        # Group by the global batch: each process takes its slice of consecutive batches, so N processes
        # see the batches one process would with an N times larger batch.
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return SeededLengthGroupedSampler([len(e["input_ids"]) for e in dataset], global_batch,
                                          self.args.data_seed if self.args.data_seed is not None else self.args.seed)

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
        # Splitting is exact only when each pass's loss is divided by the whole batch's label count;
        # DeepSpeed steps its optimizer inside every backward, so it gets the batch whole.
        from accelerate.utils import DistributedType

        if (not self.micro_batch_tokens or num_items_in_batch is None or "attention_mask" not in inputs
                or not self.causal_lm
                or self.accelerator.distributed_type == DistributedType.DEEPSPEED):
            return [inputs]

        return split_by_tokens(inputs, self.micro_batch_tokens)

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
        # gradients (not NaN) and the optimizer step is harmless.
        self.skipped_batches += 1
        zero = sum((p * 0).sum() for p in model.parameters() if p.requires_grad)
        return (zero, result[1]) if return_outputs else zero
