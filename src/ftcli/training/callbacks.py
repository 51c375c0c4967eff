"""Training that loses no work: a clean stop on Ctrl-C/SIGTERM (every rank at the same step), no
non-finite weights ever saved, and each checkpoint marked complete once every rank has written it."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from transformers import TrainerCallback

from ftcli.errors import TrainingFailed
from ftcli.training import distributed
from ftcli.training.checkpoints import mark_complete


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
