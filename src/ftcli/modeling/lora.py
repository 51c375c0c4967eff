"""LoRA through peft: the adapter a recipe's `lora:` section asks for, on the task's peft task type."""

from __future__ import annotations

from ftcli.modeling.fast_dropout import use_fast_lora_dropout

# peft has no masked-LM task type; None gives its generic model, which LoRA-wraps the encoder alike.
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM",
                   "masked-lm": None}


def attach_lora(model, task: str, lora):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type=PEFT_TASK_TYPES[task])
    model = get_peft_model(model, config)

    use_fast_lora_dropout(model)
    return model
