"""Training that loses no work: completion markers on checkpoints, a clean stop on Ctrl-C/SIGTERM,
and a guard against non-finite loss. Plugged into the one Trainer that `train.py` builds, which also
carries the exact speed and memory levers (LM head on label positions, token-bounded passes)."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from pathlib import Path

from transformers import Trainer, TrainerCallback

from ftcli import distributed
from ftcli.checkpoints import mark_complete
from ftcli.errors import TrainingFailed


class StopSignals:
    """While active, the first SIGINT/SIGTERM asks training to stop after the current step (and save);
    a second one stops at once. Checkpoints are marked complete only after their last file, so an
    immediate stop can never leave a half-written checkpoint that looks usable."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log):
        self.log = log
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.log(f"{self.received}: finishing the current step and saving a checkpoint "
                 "(send it again to stop at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals can only be set there
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _finite_parameters(model) -> bool:
    import torch

    return all(torch.isfinite(p).all() for p in model.parameters() if p.requires_grad)


class GuardCallback(TrainerCallback):
    """Stops on request, never saves non-finite weights, and marks each saved checkpoint complete."""

    def __init__(self, stop: StopSignals):
        self.stop = stop
        self.stopped = False  # on request, here or on another rank

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if _any_rank(self.stop.received is not None, args.device):
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        if control.should_save and model is not None and not _finite_parameters(model):
            raise TrainingFailed(f"the weights became non-finite (NaN/inf) at step {state.global_step}; "
                                 "not saving them", hint="lower train.learning_rate or train.max_grad_norm")

    def on_save(self, args, state, control, **kwargs):
        # Every rank writes its own RNG state into the checkpoint: mark it complete only once all have.
        distributed.barrier()
        if state.is_world_process_zero:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)
        distributed.barrier()


def _any_rank(flag: bool, device) -> bool:
    """True on every rank if it is true on any. A signal can reach the ranks in different steps;
    if only some stopped, the others would wait for them forever."""
    if not distributed.is_distributed():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], device=device)  # nccl reduces only GPU tensors
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class FtcliTrainer(Trainer):
    """Trainer plus: a non-finite loss stops training (default) or skips the batch; eval perplexity;
    and for causal LMs the LM head only on label positions (`lm_loss`) and batches run in passes of at
    most `micro_batch_tokens` tokens (`micro_batches`). Both give the loss and gradients of the plain path."""

    def __init__(self, *args, on_nonfinite_loss: str = "stop", causal_lm: bool = False,
                 micro_batch_tokens: int | None = None, **kwargs):
        if causal_lm:
            from ftcli.lm_loss import causal_lm_loss

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
        from ftcli.sampling import SeededLengthGroupedSampler

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
        from ftcli.micro_batches import split_by_tokens

        return split_by_tokens(inputs, self.micro_batch_tokens)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        if self.causal_lm and "labels" in inputs:
            from ftcli.lm_loss import head_on_label_positions

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

