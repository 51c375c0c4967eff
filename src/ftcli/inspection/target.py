"""Which model to look inside: a run's tuned model (or its base), or any model directory, with the head
class to load it with. Any task's run will do (classification and masked-lm too), unlike generation."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ftcli import runs
from ftcli.errors import UserError
from ftcli.generation.load import base_of, is_encoder_decoder
from ftcli.modeling.load import check_model_source, local_model
from ftcli.recipe import ModelSection, load_run_recipe, resolve_run

# A checkpoint's architecture name (its config's `architectures`) -> the task whose class loads it.
_HEADS = (("ForCausalLM", "causal-lm"), ("ForMaskedLM", "masked-lm"),
          ("ForSequenceClassification", "sequence-classification"))


class Target(NamedTuple):
    source: ModelSection  # the weights to load
    tokenizer: ModelSection  # where the tokenizer is (a run's model/ even for --base: the run's tokens)
    task: str  # the head class to load with (modeling.load.TASK_MODEL_CLASSES)
    seed: int | None  # a from_config base is rebuilt from the run's seed
    label2id: dict | None  # a classification run's labels, so its base loads with the same head size
    name: str  # what to call it in messages and summaries


def resolve_target(target: str | Path | None = None, base: bool = False, model: str | None = None) -> Target:
    """A run (`target`: run dir, recipe file, or None for the latest finished run here; `base`: the
    model it started from) or, with `model`, any model directory or hub id."""
    if model is not None:
        if target is not None or base:
            raise UserError("--model looks inside a model directly; it cannot be combined with a run, "
                            "a recipe or --base")
        check_model_source(str(model))
        source = ModelSection(name_or_path=str(model))
        return Target(source, source, task_of(str(model)), None, None, str(model))
    run_dir = resolve_run(target)
    recipe = load_run_recipe(run_dir)
    tuned = local_model(run_dir / runs.MODEL_DIR)
    if not base:
        return Target(tuned, tuned, recipe.task, None, None, str(run_dir))
    # On a CPU in float32: a QLoRA run's base loads unquantized (bitsandbytes needs a GPU).
    source = base_of(recipe).model_copy(update={"quantization": None})
    label2id = _labels(tuned.name_or_path) if recipe.task == "sequence-classification" else None
    return Target(source, tuned, recipe.task, recipe.train.seed, label2id, f"{run_dir} (base: {source.name_or_path})")


def task_of(name_or_path: str) -> str:
    """The task whose class loads a model: from its saved architecture, else encoder-decoder ->
    seq2seq, decoder-only -> causal-lm, and otherwise masked-lm. A head that does not match the
    checkpoint is created fresh, which leaves the attention layers (all we read) as saved."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if is_encoder_decoder(name_or_path):
        return "seq2seq"
    config = AutoConfig.from_pretrained(name_or_path)
    for architecture in config.architectures or []:
        for suffix, task in _HEADS:
            if architecture.endswith(suffix):
                return task
    kind = config.model_type
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "causal-lm"
    return "masked-lm" if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal-lm"


def _labels(model_dir: str) -> dict | None:
    from transformers import AutoConfig

    return dict(AutoConfig.from_pretrained(model_dir).label2id or {}) or None
