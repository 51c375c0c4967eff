"""The model a run would train, built on the meta device from its config alone: the same class, task
head, dtype, attention and LoRA adapter as `finetune` builds, with no weights read or downloaded (a
Hub model's config.json is all `ftcli plan` fetches). Its parameters have shapes, dtypes and
requires_grad, so they count exactly as the real ones; it runs forward passes that only carry shapes
(`training.activations`). `run_estimate` attaches the recipe's LoRA adapter as finetune does."""

from __future__ import annotations

from pathlib import Path

from ftcli.errors import ModelError, first_line
from ftcli.modeling.from_config import new_model
from ftcli.modeling.load import TASK_MODEL_CLASSES, hub_model_error


def model_config(source, task: str, label2id: dict | None):
    """The transformers config of a recipe's pretrained `model:` (a local folder, a run's model/, or
    a Hub id: config.json only), with the task's labels as `load_model` sets them."""
    from transformers import AutoConfig

    kwargs = {"trust_remote_code": source.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        config = AutoConfig.from_pretrained(source.name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        if not Path(source.name_or_path).expanduser().exists():
            raise hub_model_error(source.name_or_path, exc) from None
        raise ModelError(f"cannot read the config of {source.name_or_path}: {first_line(exc)}") from None
    if task == "reward-model":
        config.num_labels = 1
    if task == "sequence-classification" and label2id is not None:
        config.num_labels = len(label2id)
        config.label2id, config.id2label = label2id, {i: label for label, i in label2id.items()}
    return config


def checkpoint_bytes(source, total_params: int) -> int:
    """The size of the weights a pretrained model loads from: its local safetensors (or GGUF) files, or
    for a Hub model its parameters in the dtype its config.json says they were saved in."""
    folder = Path(source.name_or_path).expanduser()
    if folder.is_dir():
        files = [folder / source.gguf_file] if source.gguf_file else list(folder.glob("*.safetensors"))
        if files:
            return sum(f.stat().st_size for f in files if f.is_file())
    import torch

    dtype = getattr(model_config(source, "causal-lm", None), "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return total_params * torch.empty((), dtype=dtype).element_size()


def meta_model(recipe, tokenizer, label2id: dict | None, load_kwargs: dict):
    """The run's model on the meta device, before LoRA (`load_kwargs`: dtype and attention, as `load_model`
    takes them from `modeling.precision`). The base of a quantized
    recipe is built unquantized, in float32 as peft's preparation for k-bit training leaves what
    stays unquantized; `memory_estimate` counts its quantized layers' bytes."""
    import torch
    import transformers

    cls = getattr(transformers, TASK_MODEL_CLASSES[recipe.task])
    kwargs = dict(load_kwargs)
    if recipe.model.quantization is not None:
        kwargs["dtype"] = torch.float32
    with torch.device("meta"):
        if recipe.model.from_config is not None:
            model = new_model(cls, recipe.model.from_config, tokenizer, recipe.train.seed, label2id, **kwargs)
        else:
            model = cls.from_config(model_config(recipe.model, recipe.task, label2id), **kwargs)
    return model
