"""Training that loses no work: completion markers on checkpoints, a clean stop on Ctrl-C/SIGTERM,
and a guard against non-finite loss. Plugged into the one Trainer that `train.py` builds."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path

from transformers import Trainer, TrainerCallback

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

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.stop.received:
            control.should_save = True
            control.should_training_stop = True
        if control.should_save and model is not None and not _finite_parameters(model):
            raise TrainingFailed(f"the weights became non-finite (NaN/inf) at step {state.global_step}; "
                                 "not saving them", hint="lower train.learning_rate or train.max_grad_norm")

    def on_save(self, args, state, control, **kwargs):
        mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step)


class FtcliTrainer(Trainer):
    """Trainer plus: a non-finite loss stops training (default) or skips the batch; eval perplexity."""

    def __init__(self, *args, on_nonfinite_loss: str = "stop", **kwargs):
        super().__init__(*args, **kwargs)
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        if getattr(self.model.config, "is_encoder_decoder", False):
            # Encoder-decoders (T5, BART, ...) average their loss themselves and ignore
            # num_items_in_batch, yet take **kwargs: Trainer would then not divide the loss by
            # gradient_accumulation_steps, and 2 accumulated batches would count double.
            self.model_accepts_loss_kwargs = False

    def log(self, logs: dict, *args, **kwargs) -> None:
        # Perplexity beside every eval loss. `logs` is the very dict Trainer then uses to pick the
        # best model, so metric_for_best_model: perplexity works too.
        if "eval_loss" in logs:
            logs["eval_perplexity"] = math.exp(min(logs["eval_loss"], 700))
        super().log(logs, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

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

