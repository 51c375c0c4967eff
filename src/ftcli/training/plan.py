"""`ftcli plan`: before any training, what a run will need. Parameters, tokens and steps, and its peak
memory part by part (`run_estimate`), from the data as `finetune` prepares it and the model built on the
meta device from its config alone (a Hub model's weights are never downloaded); whether that fits this
machine and, when not, what to change (`plan_advice`); and with `--probe N` the time of N real steps
(`probe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ftcli.modeling.precision import resolve as resolve_precision
from ftcli.progress import log
from ftcli.recipe import Recipe
from ftcli.training import memory_estimate, plan_advice, probe
from ftcli.training.memory_estimate import MemoryEstimate
from ftcli.training.preflight import PreparedData, prepare_data
from ftcli.training.run_estimate import PassShape, estimate


@dataclass
class Plan:
    parameters: dict
    examples: int | None
    tokens: int | None
    steps: int
    shape: PassShape
    memory: MemoryEstimate
    capacity: int
    capacity_of: str
    time_s: float | None = None
    probe: dict | None = None
    suggestions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.capacity

    def as_json(self) -> dict:
        m = self.memory
        return {"parameters": dict(self.parameters), "tokens": self.tokens, "steps": self.steps,
                "memory": {"weights": m.weights, "trainable": m.trainable, "gradients": m.gradients,
                           "optimizer": m.optimizer, "activations": m.activations + m.logits, "total": m.total},
                "fits": self.fits, "time_s": self.time_s}


def steps_and_tokens(recipe: Recipe, data: PreparedData) -> tuple[int, int | None, int | None]:
    """(optimizer steps, training examples, their tokens) as Trainer counts steps in one process."""
    t = recipe.train
    if recipe.data.streaming:  # rows arrive as training reads them: train.max_steps is required
        return t.max_steps, None, None
    examples = data.train_set.examples
    tokens = sum(len(e["input_ids"]) for e in examples)
    if t.max_steps:
        return t.max_steps, len(examples), tokens
    batches = math.ceil(len(examples) / t.batch_size)
    per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
    return math.ceil(t.epochs * per_epoch), len(examples), tokens


def plan(recipe: Recipe, probe_steps: int = 0, log=log) -> Plan:
    """The plan of a run: its numbers, its peak memory against this machine's, and (probe_steps > 0)
    the training time those steps take here."""
    precision = resolve_precision(recipe)
    data = prepare_data(recipe, log)
    baseline = memory_estimate.current_rss()  # the process before any model, as finetune's is
    memory, counts, shape = estimate(recipe, data, precision, baseline)
    steps, examples, tokens = steps_and_tokens(recipe, data)
    room, room_of = memory_estimate.capacity(precision.device)
    result = Plan(counts, examples, tokens, steps, shape, memory, room, room_of)
    if not result.fits:
        result.suggestions = plan_advice.suggestions(recipe, data, baseline, memory.total)
    if probe_steps:
        result.probe = probe.time_steps(recipe, data, precision, probe_steps, log)
        result.time_s = result.probe["step_s"] * steps
    return result
