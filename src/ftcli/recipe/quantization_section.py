"""The recipe's `model.quantization:` section: QLoRA, a LoRA adapter trained on a base model whose
linear layers bitsandbytes holds in 4 or 8 bits (`ftcli.modeling.quantization` loads it).

The checks here depend on the recipe alone (what the section is combined with); whether this machine
can run it (bitsandbytes installed, a device it supports) is checked before any work, at run time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ftcli.recipe.section import Section

# 4-bit settings and their defaults. They are null under bits: 8, where LLM.int8 layers have no quant type,
# no nested constants, and compute int8 matmuls on float16 inputs whatever is asked.
FOUR_BIT_DEFAULTS = {"type": "nf4", "double_quant": True, "compute_dtype": "auto"}


class QuantizationSection(Section):
    bits: Literal[4, 8] = Field(4, description="4 (QLoRA: NF4/FP4 weights) or 8 (LLM.int8 weights).")
    type: Literal["nf4", "fp4"] | None = Field(
        None, description="4-bit only (default nf4): nf4, the QLoRA paper's NormalFloat (suits normally "
                          "distributed weights), or fp4.")
    double_quant: bool | None = Field(None, description="4-bit only (default true): quantize the quantization "
                                                        "constants too (~0.4 bits less per weight).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="4-bit only (default auto): the dtype the 4-bit layers compute in. auto: model.dtype "
                          "when it is bfloat16/float16, else bfloat16/float16 when train.precision is, else float32.")

    @model_validator(mode="before")
    @classmethod
    def _four_bit_defaults(cls, data):
        # Filled in before validation (absent or null), so that the saved recipe says what ran.
        if isinstance(data, dict) and data.get("bits", 4) == 4 and not isinstance(data.get("bits"), bool):
            data = {**data, **{k: v for k, v in FOUR_BIT_DEFAULTS.items() if data.get(k) is None}}
        return data

    @model_validator(mode="after")
    def _four_bit_settings(self) -> "QuantizationSection":
        given = [key for key in FOUR_BIT_DEFAULTS if getattr(self, key) is not None]
        if self.bits == 8 and given:
            raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to 4-bit "
                             "quantization only: remove it, or set bits: 4")
        return self


def quantization_problems(recipe) -> list[str]:
    """What model.quantization cannot be combined with (a Recipe, duck-typed: the schema imports this)."""
    model = recipe.model
    if model.quantization is None:
        return []
    problems = []
    if recipe.lora is None:
        # A quantized weight has no gradient to update: only adapters beside it can learn.
        problems.append("model.quantization trains a LoRA adapter on the quantized base (QLoRA): add a lora: "
                        "section (e.g. `lora: {r: 16}`), or remove model.quantization for a full fine-tune")
    if model.from_config is not None:
        problems.append("model.quantization quantizes pretrained weights; a model built from_config has none "
                        "worth keeping frozen: remove model.quantization")
    if model.gguf_file:
        problems.append("model.quantization cannot load a GGUF file (it has a quantization of its own): "
                        "convert it with `ftcli import-gguf FILE DIR` and point model.name_or_path at DIR")
    engine = recipe.distributed
    if engine is not None and (engine.fsdp or engine.deepspeed):
        which = "distributed.fsdp" if engine.fsdp else "distributed.deepspeed"
        problems.append(f"model.quantization with {which} is not supported (the sharded engines need the 4-bit "
                        "storage dtype matched to theirs): train QLoRA on one GPU, or with DDP (--nproc, no "
                        "distributed.fsdp / deepspeed)")
    return problems
