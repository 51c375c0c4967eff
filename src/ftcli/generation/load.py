"""A model ready to generate: a run's tuned model (or its base), or any model, with the settings and
prompt format it answers in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ftcli import runs
from ftcli.data.generation_prompts import generation_format
from ftcli.data.templates import has_chat_template
from ftcli.errors import UserError
from ftcli.generation.prompting import check_settings, read_few_shot_file, settings_with, tools_of
from ftcli.modeling.load import check_model_source, load_model, load_tokenizer, local_model
from ftcli.progress import log
from ftcli.recipe import GenerateSection, ModelSection, TrainSection, load_run_recipe, resolve_run


class Loaded(NamedTuple):
    """Everything generation needs, for a run or a model: unpack as `model, tokenizer, settings, chat, mode`."""

    model: Any
    tokenizer: Any
    settings: GenerateSection  # the recipe's `generate:` section with overrides applied, seed filled in
    chat: bool | str  # prompts go through a chat template: the tokenizer's (True) or this Jinja one
    mode: str  # "sft" (answer a formatted prompt), "text" (continue the prompt) or "seq2seq" (encode it)


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ready(settings: GenerateSection, default_seed: int) -> GenerateSection:
    """Checked settings with the seed filled in and few-shot and tools files read (before any model loads)."""
    check_settings(settings)
    update: dict = {}
    if settings.seed is None:
        update["seed"] = default_seed
    if isinstance(settings.few_shot, str):
        update["few_shot"] = read_few_shot_file(settings.few_shot)
    if settings.tools is not None:
        update["tools"] = tools_of(settings)
    return settings.model_copy(update=update) if update else settings


def with_source_prefix(settings: GenerateSection, source_prefix: str) -> GenerateSection:
    """seq2seq: training put `data.source_prefix` before every source, so generation does too, as
    the front of the prompt template."""
    if not source_prefix:
        return settings
    return settings.model_copy(update={"template": source_prefix + (settings.template or "{prompt}")})


def base_of(recipe) -> ModelSection:
    """The model a run started from (`--base`): its recipe's model, or a preference run's reference."""
    reference = recipe.preference.reference if recipe.preference else "auto"
    if reference in ("auto", "none"):  # none (orpo, simpo): the model training started from
        return recipe.model
    return recipe.model.model_copy(update={"name_or_path": reference, "quantization": None})


def is_encoder_decoder(name_or_path: str) -> bool:
    """Whether the model's config says encoder-decoder (T5, BART); False when there is no readable config."""
    from transformers import AutoConfig

    try:
        return bool(AutoConfig.from_pretrained(name_or_path).is_encoder_decoder)
    except (OSError, ValueError):
        return False  # loading the model itself reports what is wrong with it


def load_for_generation(target: str | Path | None = None, base: bool = False, model: str | None = None,
                        **options) -> Loaded:
    """Model, tokenizer, settings, chat flag and mode for generating from a run (`target`: run dir,
    recipe file, or None for the latest run here; `base`: the run's base model with the run's
    tokenizer and prompt format) or, with `model`, from any model directory or hub id (default
    settings; its chat template when it has one, plain continuation otherwise). `options` override
    the recipe's `generate:` section (None = keep)."""
    if model is not None:
        if target is not None or base:
            raise UserError("--model generates with a model directly; it cannot be combined with "
                            "--run, --recipe or --base")
        source = ModelSection(name_or_path=str(model))
        check_model_source(source.name_or_path)
        settings = _ready(settings_with(GenerateSection(), **options), TrainSection().seed)
        tokenizer = load_tokenizer(source)
        seq2seq = is_encoder_decoder(source.name_or_path)
        weights = load_model("seq2seq" if seq2seq else "causal-lm", source)
        chat = not seq2seq and has_chat_template(tokenizer)
        mode = "seq2seq" if seq2seq else "sft" if chat else "text"
    else:
        run_dir = resolve_run(target)
        recipe = load_run_recipe(run_dir)
        if recipe.task not in ("causal-lm", "seq2seq"):
            raise UserError(f"{run_dir} is a {recipe.task} run; generate needs a causal-lm or seq2seq run",
                            hint="use `ftcli eval` for classification runs")
        settings = _ready(settings_with(recipe.generate, **options), recipe.train.seed)
        tuned = local_model(run_dir / runs.MODEL_DIR)
        tokenizer = load_tokenizer(tuned)
        # --base of a from_config run: its untrained starting point (same tokenizer and seed); of a
        # preference run: the reference it was tuned against.
        weights = load_model(recipe.task, base_of(recipe) if base else tuned, tokenizer=tokenizer,
                             seed=recipe.train.seed)
        mode = (runs.read_train_results(run_dir) or {}).get("mode", "sft")
        if mode == "preference":  # a pair's replies answer a prompt as SFT replies do
            mode = "sft"
        if recipe.task == "seq2seq":
            mode, settings = "seq2seq", with_source_prefix(settings, recipe.data.source_prefix)
        # Plain-text runs learned continuation; SFT runs learned to answer a prompt in data.template.
        settings, chat = generation_format(tokenizer, recipe.data, settings) if mode == "sft" else (settings, False)
    if chat and settings.template is not None:
        log("generate.template is for plain prompts; this model uses its chat template instead")
    return Loaded(weights.to(_device()).eval(), tokenizer, settings, chat, mode)
