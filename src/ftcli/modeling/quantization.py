"""QLoRA through bitsandbytes: a recipe's `model.quantization` as transformers' BitsAndBytesConfig,
loading the quantized base, preparing it for training, and what the run records.

The quantized model exists only while training (and as the base `ftcli eval` / `generate --base`
compare against: the model as it was trained). A run's model/ is the adapter merged into a
full-precision copy of the base (`unquantized`), so it loads anywhere without bitsandbytes.

bitsandbytes' own layers are read in one place, `_unquantized_layers`: transformers swaps every
linear layer for a 4/8-bit one before loading, and a layer whose weights are not in the checkpoint (a
new classification head, an MLM head a base model lacks) stays an empty shell that fails at its first
forward. Those are found after loading and loaded again unquantized (tests/test_quantization.py
fails if a bitsandbytes release changes what is read here).
"""

from __future__ import annotations

import importlib.util
import logging
import os

from ftcli.errors import UserError
from ftcli.modeling.precision import bf16_supported, device_kind

INSTALL = "pip install 'ftcli[quant]' (or: pip install 'bitsandbytes>=0.48')"


def check_available(section) -> None:
    """Refuse, before any data or model work, a quantization this machine cannot run."""
    if section is None:
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("model.quantization needs the bitsandbytes package, which is not installed",
                        hint=INSTALL)
    if device_kind() == "mps":
        # transformers places a bitsandbytes model on the CPU there while Trainer trains on the Apple GPU.
        raise UserError("model.quantization runs on CUDA GPUs and on CPUs; this machine trains on an Apple GPU",
                        hint="remove model.quantization (LoRA with model.dtype: bfloat16 halves the weights), "
                             "or train on a CUDA GPU")
    if section.bits == 4 and section.compute_dtype == "bfloat16" and device_kind() == "cuda" \
            and not bf16_supported("cuda"):
        raise UserError("model.quantization.compute_dtype: bfloat16 is emulated on this GPU (before Ampere), "
                        "far slower than float16", hint="set compute_dtype: float16, or auto")


def compute_dtype(section, precision=None) -> str:
    """The dtype 4-bit layers compute in: the setting, or for auto the run's half dtype when it has
    one (`precision`: modeling.precision.Precision; without it, the device's), else float32."""
    if section.compute_dtype != "auto":
        return section.compute_dtype
    if precision is None:
        import torch

        if not torch.cuda.is_available():
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if precision.dtype in ("bfloat16", "float16"):
        return precision.dtype
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision.mixed, "float32")


def bnb_config(section, precision=None, skip: list[str] | None = None):
    """transformers' BitsAndBytesConfig for a `model.quantization` section; `skip`: modules to keep
    unquantized (replaces transformers' own choice, so it must include it)."""
    import torch
    from transformers import BitsAndBytesConfig

    if section.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=section.type,
                              bnb_4bit_use_double_quant=section.double_quant,
                              bnb_4bit_compute_dtype=getattr(torch, compute_dtype(section, precision)),
                              llm_int8_skip_modules=skip)


def _device_map() -> dict:
    """One process, one device: the whole quantized model on this process's GPU (its LOCAL_RANK
    under a launcher), or on the CPU. bitsandbytes quantizes as the weights reach the device."""
    import torch

    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return {"": "cpu"}


def load_quantized(load, kwargs: dict, section, precision=None):
    """`load(**kwargs)` (a from_pretrained) with the base quantized as `section` says. Layers left
    unquantized because the checkpoint lacks their weights are loaded again in full precision."""
    check_available(section)
    if section.bits == 8:
        # LLM.int8 casts every input to float16, and says so at every layer of every step.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    options = {**kwargs, "device_map": _device_map()}
    model = load(**options, quantization_config=bnb_config(section, precision))
    empty = _unquantized_layers(model)
    if empty:
        # transformers' own skip list (the output embeddings, tied and last modules) is what stayed plain.
        kept = [name for name, module in model.named_modules() if type(module).__name__ == "Linear"]
        del model
        model = load(**options, quantization_config=bnb_config(section, precision, skip=kept + empty))
    return _off_the_checkpoint(_unpacked_where_packing_fails(model))


def _unpacked_where_packing_fails(model):
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weight for its inference kernel the
    first time the layer runs without gradients (eval, a reference pass), and that repacking assumes
    the input width is a multiple of the quantization block and the output width a multiple of 32: on
    any other layer it fails with a bare reshape error. Those layers keep the kernel training uses."""
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if type(module).__name__ == "Linear4bit" and state is not None and \
                (module.in_features % state.blocksize or module.out_features % 32):
            module.support_avx512bf16_for_cpu = False  # the attribute bitsandbytes 0.49+ reads
    return model


def _off_the_checkpoint(model):
    """`model` with its unquantized weights (embeddings, norms, head) in memory of their own. Loaded in
    the checkpoint's dtype they are views of the memory-mapped file, which then stays mapped whole,
    every page quantizing read still resident: SmolLM2-135M in 4 bits holds 300 MB less once they are
    copied (tests/test_quantization.py)."""
    for param in model.parameters():  # shared (tied) parameters come once, and stay shared
        if param.dtype.is_floating_point:
            param.data = param.data.clone()
    return model


def _unquantized_layers(model) -> list[str]:
    """bitsandbytes layers that hold no quantized weight: 4-bit ones without a quant_state, 8-bit ones
    whose weight is not int8 (bitsandbytes' Params4bit / Int8Params attributes, read here alone)."""
    import torch

    empty = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        weight = getattr(module, "weight", None)
        if kind == "Linear4bit" and getattr(weight, "quant_state", None) is None:
            empty.append(name)
        elif kind == "Linear8bitLt" and getattr(weight, "dtype", None) != torch.int8:
            empty.append(name)
    return empty


def is_quantized(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False))


def prepare_for_training(model, gradient_checkpointing: bool):
    """peft's preparation of a quantized base for an adapter (a no-op for any other model): every base
    weight frozen, the unquantized ones (norms, embeddings, head) in float32 for stable updates, and
    activation checkpointing on when the recipe asks (non-reentrant, as `training.arguments` sets it)."""
    if not is_quantized(model):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})


def unquantized(source):
    """The same `model:` section without quantization: the full-precision base an adapter merges into."""
    return source.model_copy(update={"quantization": None})


def record(section, precision=None) -> dict | None:
    """What train_results.json says about the quantization a run trained on (auto resolved)."""
    if section is None:
        return None
    from ftcli.versions import package_versions

    found = {"bits": section.bits, **package_versions(["bitsandbytes"])}  # no version where it is missing
    if section.bits == 4:
        found.update(type=section.type, double_quant=section.double_quant,
                     compute_dtype=compute_dtype(section, precision))
    return found


def describe(found: dict | None) -> str:
    """'4-bit nf4 (double quantization, float32 compute)' for a recorded quantization."""
    if not found:
        return "none"
    if found.get("bits") == 8:
        return "8-bit (LLM.int8: int8 matmuls on float16 inputs)"
    double = "double quantization, " if found.get("double_quant") else ""
    return f"4-bit {found.get('type', 'nf4')} ({double}{found.get('compute_dtype', 'float32')} compute)"
