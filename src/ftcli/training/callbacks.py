"""Training that loses no work: a clean stop on Ctrl-C/SIGTERM (every rank at the same step), no
non-finite weights ever saved, each checkpoint claimed before Trainer writes it and marked complete once
every rank has, and (train.on_nonfinite_loss: skip) optimizer steps skipped without a trace."""

from __future__ import annotations

import copy
import signal
import threading
from pathlib import Path

from transformers import TrainerCallback

from ftcli.errors import TrainingFailed
from ftcli.training import distributed
from ftcli.training.checkpoints import claim, mark_complete


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
        self._claim_if_saving(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._claim_if_saving(args, state, control)  # save_strategy: epoch decides here

    def _claim_if_saving(self, args, state, control):
        # Trainer saves checkpoint-N right after on_step_end / on_epoch_end when should_save is set
        # (Trainer's own callback, first in the list, sets it): claim it first, so that a kill during
        # the save leaves a folder known to be ours and torn. Every rank gets here at the same step;
        # the barrier keeps the others from creating the folder before rank 0 has claimed it.
        if not control.should_save:
            return
        if state.is_world_process_zero:
            claim(_checkpoint(args, state), state.global_step)
        distributed.barrier()

    def on_save(self, args, state, control, **kwargs):
        # Every rank writes its own RNG state into the checkpoint: mark it complete only once all have.
        distributed.barrier()
        if state.is_world_process_zero:
            mark_complete(_checkpoint(args, state), state.global_step)
        distributed.barrier()


def _checkpoint(args, state) -> Path:
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


class SkipNonfiniteSteps(TrainerCallback):
    """train.on_nonfinite_loss: skip. An optimizer step in which any batch (any micro-batch of the
    accumulation, on any rank) had a non-finite loss leaves the weights, the optimizer state and the
    learning rate exactly as they were.

    Through public hooks only: just before optimizer.step every gradient is set to None, and torch's
    optimizers leave a parameter without a gradient untouched (no moment update, no weight decay, no
    step count: the documented difference between zero_grad's None and zero). Trainer then still steps
    the LR schedule (accelerate reports a skipped step only for fp16 overflow), so the schedule's state
    and each group's lr are put back at the end of the step, before anything logs or saves them."""

    def __init__(self, log):
        self.log = log
        self.nonfinite = False  # set by FtcliTrainer.compute_loss
        self.skipped_steps = 0
        self._held = None

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        skip = _any_rank(self.nonfinite, args.device)  # every rank skips the same steps, or none
        self.nonfinite = False
        if not skip:
            return
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        self._held = (copy.deepcopy(lr_scheduler.state_dict()), [g["lr"] for g in optimizer.param_groups])

    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        if self._held is None:
            return
        schedule, lrs = self._held
        self._held = None
        lr_scheduler.load_state_dict(schedule)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        self.skipped_steps += 1
        self.log(f"step {state.global_step}: non-finite loss; optimizer step skipped (weights, optimizer "
                 "state and learning rate unchanged)")


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
