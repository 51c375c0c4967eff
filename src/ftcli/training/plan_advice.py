"""What to change when a plan does not fit: each lever a recipe has not pulled yet, estimated as its
own recipe (the same model on the meta device, the same data), in order of the memory it saves."""

from __future__ import annotations

from ftcli.errors import UserError
from ftcli.modeling.precision import resolve as resolve_precision
from ftcli.recipe import LoraSection, Recipe
from ftcli.recipe.quantization_section import QuantizationSection
from ftcli.training.run_estimate import estimate


def _with(recipe: Recipe, section: str, **changes) -> Recipe:
    return recipe.model_copy(update={section: getattr(recipe, section).model_copy(update=changes)})


def levers(recipe: Recipe) -> list[tuple[str, Recipe]]:
    """(what to set, the recipe with it set) for every lever this recipe has left."""
    t, found = recipe.train, []
    if recipe.lora is None and recipe.model.from_config is None:
        found.append(("lora: {r: 8} (train an adapter; the base stays frozen)",
                      recipe.model_copy(update={"lora": LoraSection()})))
    if recipe.model.quantization is None and recipe.model.from_config is None and not recipe.model.gguf_file:
        lora = recipe.lora or LoraSection()
        quantized = recipe.model_copy(update={"lora": lora})
        quantized = _with(quantized, "model", quantization=QuantizationSection(bits=4))
        found.append(("model.quantization: {bits: 4}" + ("" if recipe.lora else " with lora: (QLoRA)"), quantized))
    if not t.gradient_checkpointing:
        found.append(("train.gradient_checkpointing: true", _with(recipe, "train", gradient_checkpointing=True)))
    if t.batch_size > 1:
        half = t.batch_size // 2
        found.append((f"train.batch_size: {half} with gradient_accumulation_steps: {t.gradient_accumulation_steps * 2}"
                      " (the same effective batch)",
                      _with(recipe, "train", batch_size=half,
                            gradient_accumulation_steps=t.gradient_accumulation_steps * 2)))
    return found


def suggestions(recipe: Recipe, data, baseline: int, total: int) -> list[tuple[str, int]]:
    """(change, its estimated peak) for each lever that lowers the peak, largest saving first. Each
    changed recipe gets its own precision (model.dtype auto halves a LoRA base on a GPU)."""
    found = []
    for change, changed in levers(recipe):
        try:
            precision = resolve_precision(changed)
        except UserError:  # a lever this machine cannot pull
            continue
        memory = estimate(changed, data, precision, baseline)[0]
        if memory.total < total:
            found.append((change, memory.total))
    return sorted(found, key=lambda item: item[1])
