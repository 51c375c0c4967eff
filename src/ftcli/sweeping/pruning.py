"""Pruning: a Trainer callback that reports each intermediate eval's objective to the Optuna trial and
stops training when the pruner says the trial trails the others."""

from __future__ import annotations

import math

from transformers import TrainerCallback

PRUNED_AT = "ftcli_pruned_at_step"  # trial user attribute: a restarted sweep records the trial PRUNED


def intermediate_value(metrics: dict, objective: str) -> float | None:
    """The objective in Trainer's eval metrics (`eval_loss`; perplexity is its exponential)."""
    if objective == "perplexity" and "eval_loss" in metrics:
        return math.exp(min(metrics["eval_loss"], 700.0))  # exp overflows a float past ~709
    value = metrics.get(f"eval_{objective}")
    return None if value is None else float(value)


class PruningCallback(TrainerCallback):
    def __init__(self, trial, objective: str, log=None):
        self.trial, self.objective, self.log = trial, objective, log
        self.pruned_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = intermediate_value(metrics or {}, self.objective)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(value, step=state.global_step)
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            self.trial.set_user_attr(PRUNED_AT, state.global_step)
            control.should_training_stop = True
            if self.log:
                self.log(f"trial pruned at step {state.global_step}: {self.objective} {value:.4g} trails the median")
