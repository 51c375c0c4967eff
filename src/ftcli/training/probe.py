"""`ftcli plan --probe N`: N real training steps of the run on this machine, timed, in a throwaway
output directory (nothing saved, nothing tracked), so the plan can say how long the whole run takes.
The model, arguments, collator and loss are finetune's own; the first step (allocations, kernel
choices) is left out of the time when there are more."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from transformers import PrinterCallback, TrainerCallback

from ftcli.data.collators import data_collator
from ftcli.modeling.precision import Precision
from ftcli.modeling.quantization import check_available as check_quantization
from ftcli.recipe import Recipe
from ftcli.training import architectures, memory_estimate
from ftcli.training.arguments import training_arguments
from ftcli.training.finetune import build_model
from ftcli.training.trainer import FtcliTrainer


class _StepTimer(TrainerCallback):
    def __init__(self, cuda: bool):
        self.cuda, self.started, self.times = cuda, 0.0, []

    def _sync(self):
        if self.cuda:  # CUDA runs ahead of Python: a step is done when its kernels are
            import torch

            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self.started)


def _probe_recipe(recipe: Recipe, steps: int, out: Path) -> Recipe:
    """The run's recipe for `steps` steps into `out`: no evaluation, tracking or best-model choice."""
    train = recipe.train.model_copy(update={
        "max_steps": steps, "output_dir": str(out), "eval_strategy": "no", "load_best_model_at_end": False,
        "early_stopping_patience": None, "report_to": ["none"], "logging_steps": max(steps, 1)})
    return recipe.model_copy(update={"train": train})


def time_steps(recipe: Recipe, data, precision: Precision, steps: int, log) -> dict:
    """{"steps", "step_s", "peak_bytes"}: N steps of the run here, the seconds one takes (median, first
    left out when there are more), and this process's measured peak memory meanwhile."""
    from transformers import set_seed
    from transformers.trainer_utils import SaveStrategy

    check_quantization(recipe.model.quantization)
    log(f"probe: timing {steps} training step{'s' if steps > 1 else ''} on this machine")
    set_seed(recipe.train.seed)
    with tempfile.TemporaryDirectory(prefix="ftcli-probe-") as out:
        probe = _probe_recipe(recipe, steps, Path(out))
        model = build_model(probe, data, precision)
        args = training_arguments(probe, Path(out), precision)
        args.save_strategy = SaveStrategy.NO  # a probe keeps nothing
        timer = _StepTimer(precision.device == "cuda")
        trainer = FtcliTrainer(model=model, args=args, data_collator=data_collator(probe, data.tokenizer),
                               train_dataset=data.train_set.examples, processing_class=data.tokenizer,
                               callbacks=[timer], on_nonfinite_loss=probe.train.on_nonfinite_loss,
                               **architectures.loss_levers(model, probe.task == "causal-lm",
                                                           probe.train.micro_batch_tokens, lambda _: None,
                                                           liger=probe.train.liger_kernel))
        trainer.remove_callback(PrinterCallback)  # stdout is the plan's
        trainer.train()
    timed = timer.times[1:] if len(timer.times) > 1 else timer.times
    return {"steps": len(timer.times), "step_s": statistics.median(timed),
            "peak_bytes": memory_estimate.peak_memory_bytes(precision.device)}
