"""LoRA through peft: the adapter a recipe's `lora:` section asks for (DoRA, rank-stabilised scaling,
modules trained in full beside it), on the task's peft task type."""

from __future__ import annotations

from ftcli.errors import UserError, suggest
from ftcli.modeling.fast_dropout import use_fast_lora_dropout

# peft has no masked-LM task type; None gives its generic model, which LoRA-wraps the encoder alike.
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM",
                   "masked-lm": None, "reward-model": "SEQ_CLS"}


def lora_config(task: str, lora):
    """peft's LoraConfig for a recipe's `lora:` section."""
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type=PEFT_TASK_TYPES[task],
                      use_dora=lora.use_dora, use_rslora=lora.use_rslora, modules_to_save=lora.modules_to_save)


def attach_lora(model, task: str, lora):
    from peft import get_peft_model

    _check_modules_to_save(model, lora.modules_to_save)
    # peft keeps the adapters in float32 over float16/bfloat16 weights (autocast_adapter_dtype), so
    # their gradients and optimizer states are float32 whatever model.dtype is.
    model = get_peft_model(model, lora_config(task, lora))
    use_fast_lora_dropout(model)
    return model


def _check_modules_to_save(model, names: list[str] | None) -> None:
    """peft trains every module whose full name ends with one of modules_to_save, and silently nothing
    for a name that ends none: refuse that, with the closest names the model has."""
    if not names:
        return
    modules = [name for name, _ in model.named_modules() if name]
    leaves = sorted({leaf for name in modules if not (leaf := name.rsplit(".", 1)[-1]).isdigit()})
    missing = [n for n in names if not any(m.endswith(n) for m in modules)]
    if missing:
        raise UserError(f"lora.modules_to_save: the model has no module {', '.join(map(repr, missing))}"
                        f"{suggest(missing[0], leaves)}",
                        hint=f"name modules as the model does: {', '.join(leaves)}")
