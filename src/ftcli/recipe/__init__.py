"""The recipe room: the schema (pydantic, extra="forbid"), loading with every problem at once and
did-you-mean, --set overrides, paths, the reference `ftcli schema` prints, `model.from_config`
checks, and finding a finished run's recipe.

May import: errors, io, runs (the run-directory layout). Nothing else of ftcli: every other room
builds on this one.
"""

from ftcli.recipe.loading import apply_overrides, dump_recipe, load_recipe, parse_recipe, read_yaml, save_recipe
from ftcli.recipe.paths import resolve_paths
from ftcli.recipe.reference import reference_yaml
from ftcli.recipe.run_recipe import load_run_recipe, resolve_run
from ftcli.recipe.schema import (
                                  BEST_MODEL_METRICS,
                                  DEFAULT_METRICS,
                                  GENERATION_METRICS,
                                  TASK_METRICS,
                                  TASKS,
                                  TEMPLATE_NAMES,
                                  DataInput,
                                  DataSection,
                                  DataSource,
                                  DistributedSection,
                                  EvalSection,
                                  FewShotExample,
                                  GenerateSection,
                                  LoraSection,
                                  ModelSection,
                                  Recipe,
                                  Section,
                                  Task,
                                  TokenizerSection,
                                  TokenizerTraining,
                                  TrainSection,
)

__all__ = [
    "TASKS", "Task", "GENERATION_METRICS", "TASK_METRICS", "BEST_MODEL_METRICS", "DEFAULT_METRICS",
    "TEMPLATE_NAMES", "Section", "ModelSection", "TokenizerSection", "TokenizerTraining", "DataInput",
    "DataSource", "DataSection", "LoraSection", "TrainSection", "DistributedSection", "EvalSection",
    "FewShotExample", "GenerateSection", "Recipe", "reference_yaml",
    "parse_recipe", "read_yaml", "apply_overrides", "resolve_paths", "load_recipe", "dump_recipe",
    "save_recipe", "resolve_run", "load_run_recipe",
]



