"""The recipe's `sweep:` section: the hyper-parameter search `ftcli sweep` runs over the rest of the recipe
(`ftcli.sweeping`). `ftcli finetune` and `validate` accept it and train the recipe as written.

Each parameter is a dotted recipe key (`train.learning_rate`, `lora.r`) with either `choices` or a
`low`/`high` range (`log: true` samples on a log scale, as learning rates want; ints when both bounds
are ints). Whether the key exists, and whether the objective is a metric of the task, depend on the
rest of the recipe: `sweep_problems` checks them from the Recipe's own validator.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ftcli.errors import suggest
from ftcli.recipe.section import Section, _nested_model

# Objectives that are better small; every other metric is better large.
MINIMIZED = ("loss", "perplexity")
# Objectives training's own evaluations report (eval_loss; perplexity is its exponential), so pruning
# can read them at each intermediate eval. Classifiers also report their metrics there.
INTERMEDIATE = ("loss", "perplexity")


class SweepParameter(Section):
    choices: list[Any] | None = Field(None, min_length=1, description="The values to try (any the key takes).")
    # int | float: pydantic keeps an int an int, so `low: 4, high: 64` samples ints (lora.r).
    low: int | float | None = Field(None, description="The range's lower bound (with high).")
    high: int | float | None = Field(None, description="The range's upper bound; ints when low and high are both ints.")
    log: bool = Field(False, description="Sample the range on a log scale (learning rates).")

    @model_validator(mode="after")
    def _one_kind(self) -> "SweepParameter":
        ranged = self.low is not None or self.high is not None
        if (self.choices is not None) == ranged:
            raise ValueError("give either choices: [...] or low and high")
        if ranged:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low > self.high:
                raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
            if self.log and self.low <= 0:
                raise ValueError(f"log: true needs low above 0 (got {self.low:g})")
        elif self.log:
            raise ValueError("log applies to a low/high range, not to choices")
        return self

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)


class SweepSection(Section):
    """`ftcli sweep`: trials of the recipe with sampled values, searched by Optuna (pip install 'ftcli[sweep]')."""

    parameters: dict[str, SweepParameter] = Field(
        ..., min_length=1, description="Dotted recipe keys to search, each {choices: [...]} or {low, high, log}.",
        json_schema_extra={"example": "{train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}, "
                                      "lora.r: {choices: [8, 16]}}"})
    trials: int = Field(10, gt=0, description="Trials in all (a resumed or extended sweep counts the ones done).")
    objective: str = Field("loss", description="What ranks trials: any eval metric of the task (ftcli eval on the "
                                               "trial's eval data), loss included.")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="minimize | maximize; default: minimize loss and perplexity, maximize the others.")
    pruning: bool = Field(False, description="Stop trials early whose intermediate evals (train.eval_strategy) "
                                             "trail the median of finished trials at the same step.")
    pruning_startup_trials: int = Field(2, ge=0, description="Trials that finish before any is pruned.")
    seed: int = Field(0, description="The sampler's (TPE) seed.")

    @model_validator(mode="after")
    def _default_direction(self) -> "SweepSection":
        if self.direction is None:
            self.direction = "minimize" if self.objective in MINIMIZED else "maximize"
        return self


def _only_sections(annotation) -> bool:
    """A key that holds a section and nothing else (`lora`), as opposed to a value (`data.train`: a path
    or a mapping)."""
    members = [m for m in getattr(annotation, "__args__", (annotation,)) if m is not type(None)]
    return all(isinstance(m, type) and issubclass(m, BaseModel) for m in members)


def key_problem(recipe_model: type[BaseModel], key: str) -> str | None:
    """Why `key` (dotted) names no value of the recipe schema, with a did-you-mean; None when it does."""
    model, parts = recipe_model, key.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part) if model is not None else None
        where = ".".join(parts[:i]) or "the recipe"
        if field is None:
            return f"'{key}' is not a recipe key: {where} has no '{part}'{suggest(part, model.model_fields)}"
        nested = _nested_model(field.annotation)
        if i == len(parts) - 1:
            if _only_sections(field.annotation):
                example = next(iter(nested.model_fields))
                return f"'{key}' is a whole section: name one of its keys (e.g. {key}.{example})"
            return None
        if part == "sweep":
            return f"'{key}': a sweep cannot search its own settings"
        model = nested
        if model is None:
            return f"'{key}' is not a recipe key: {'.'.join(parts[:i + 1])} is a value, not a section"
    return None


def _absent_section(recipe, key: str) -> str | None:
    # Setting lora.r on a recipe without lora: would create the section: LoRA on, silently.
    node = recipe
    for part in key.split(".")[:-1]:
        node = getattr(node, part, None)
        if node is None:
            return f"the recipe has no {part}: section, so it has no {key} to search (add the section)"
        if not isinstance(node, BaseModel):
            return None
    return None


def sweep_problems(recipe, task_metrics: tuple) -> list[str]:
    """What the sweep asks that this recipe cannot do (a Recipe, duck-typed: the schema imports this)."""
    sweep = recipe.sweep
    if sweep is None:
        return []
    problems = [f"sweep.parameters.{key}: {p}" for key in sweep.parameters
                if (p := key_problem(type(recipe), key) or _absent_section(recipe, key))]
    if sweep.objective not in task_metrics:
        problems.append(f"sweep.objective: '{sweep.objective}' is not an eval metric of this recipe"
                        f"{suggest(sweep.objective, task_metrics)} (choose from {', '.join(task_metrics)})")
    if sweep.pruning:
        if recipe.train.eval_strategy == "no":
            problems.append("sweep.pruning stops trials from their intermediate evals: set train.eval_strategy "
                            "to steps or epoch (and train.eval_steps)")
        intermediate = INTERMEDIATE + (tuple(task_metrics) if recipe.task == "sequence-classification" else ())
        if sweep.objective not in intermediate:
            problems.append(f"sweep.pruning: objective '{sweep.objective}' is scored after training only, not at "
                            f"intermediate evals (prune on {', '.join(dict.fromkeys(intermediate))})")
    return problems
