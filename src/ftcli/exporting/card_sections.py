"""The body of a model card, section by section: how it was trained, its metrics, how to load it
without ftcli, and where its base model comes from."""

from __future__ import annotations

from typing import Literal

from ftcli.data.sources import describe_source
from ftcli.modeling.load import TASK_MODEL_CLASSES
from ftcli.modeling import quantization

Kind = Literal["model", "adapter", "gguf"]
PEFT_AUTO_CLASSES = {"causal-lm": "AutoPeftModelForCausalLM",
                     "sequence-classification": "AutoPeftModelForSequenceClassification",
                     "seq2seq": "AutoPeftModelForSeq2SeqLM", "masked-lm": "AutoPeftModel",
                     "reward-model": "AutoPeftModelForSequenceClassification"}


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def training_section(recipe, train_results: dict, base_note: str) -> list[str]:
    t, d = recipe.train, recipe.data
    mode = train_results.get("mode")
    lines = ["## Training", "",
             f"- **Task:** `{recipe.task}`" + (f" ({mode}" + (f", {train_results['format'].replace('_', '/')} rows"
                                                          if train_results.get("format") else "") + ")"
                                               if mode else ""),
             f"- **Base model:** {base_note}",
             "- **Method:** " + _method(recipe, train_results),
             f"- **Training data:** {describe_source(d.train)}",
             "- **Eval data:** " + (describe_source(d.eval) if d.eval is not None
                                     else f"{d.eval_fraction:g} of the training rows held out"), ""]
    sources = train_results.get("data_sources") or []
    if sources:
        lines += ["| split | source | rows read | rows kept | rows used |", "|---|---|---|---|---|"]
        lines += [f"| {s.get('split', '')} | {s.get('source', '')} | {s.get('rows_read', '')} | "
                  f"{s.get('rows_kept', '')} | {s.get('rows_used', '')} |" for s in sources]
        lines.append("")
    hyper = [("epochs", t.epochs if t.max_steps is None else None), ("max steps", t.max_steps),
             ("steps run", train_results.get("global_step")), ("training examples", train_results.get("train_samples")),
             ("batch size", t.batch_size), ("gradient accumulation", t.gradient_accumulation_steps),
             ("learning rate", t.learning_rate), ("scheduler", t.lr_scheduler_type), ("warmup steps", t.warmup_steps),
             ("weight decay", t.weight_decay), ("max length", d.max_length), ("seed", t.seed)]
    lines += ["| hyperparameter | value |", "|---|---|"]
    lines += [f"| {name} | {_number(value)} |" for name, value in hyper if value is not None]
    return lines + [""]


def _method(recipe, train_results: dict) -> str:
    if not recipe.lora:
        return "full fine-tune"
    lora = recipe.lora
    method = (f"LoRA (r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, "
              f"target modules: {_modules(lora.target_modules)})")
    if recipe.model.quantization is None:
        return method
    found = train_results.get("quantization") or quantization.record(recipe.model.quantization)
    return (f"QLoRA: {method} on the base quantized to {quantization.describe(found)} by bitsandbytes "
            f"{found.get('bitsandbytes', '')}".rstrip())


def _modules(target) -> str:
    return target if isinstance(target, str) else ", ".join(target)


def metrics_section(train_results: dict, eval_results: dict | None) -> list[str]:
    lines = ["## Metrics", ""]
    shown = [(k, train_results[k]) for k in ("train_loss", "train_runtime", "epoch", "global_step")
             if train_results.get(k) is not None]
    best = {k: v for k, v in train_results.items() if k.startswith("best_") and v is not None}
    lines += [f"- {k}: {_number(v)}" for k, v in shown + sorted(best.items())]
    if not eval_results:
        return lines + ["", "No eval results yet (`ftcli eval RUN` adds base-vs-tuned metrics here).", ""]
    tuned, base = eval_results.get("tuned") or {}, eval_results.get("base") or {}
    lines += ["", f"Eval on {eval_results.get('examples', '?')} examples of {eval_results.get('eval_data', 'the eval data')}"
              f" (`ftcli eval`):", ""]
    if base:
        lines += ["| metric | base | tuned | change |", "|---|---|---|---|"]
        for name, value in tuned.items():
            other = base.get(name)
            change = _number(value - other) if isinstance(value, (int, float)) and isinstance(other, (int, float)) else ""
            lines.append(f"| {name} | {_number(other) if other is not None else ''} | {_number(value)} | {change} |")
    else:
        lines += ["| metric | tuned |", "|---|---|"] + [f"| {k} | {_number(v)} |" for k, v in tuned.items()]
    return lines + [""]


def usage_section(recipe, kind: Kind, where: str, hub_base: str | None, num_labels: int | None,
                   gguf_name: str | None) -> list[str]:
    cls = TASK_MODEL_CLASSES[recipe.task]
    lines = ["## How to load it", ""]
    if kind == "gguf":
        return lines + ["With llama.cpp:", "", "```", f"llama-cli -m {gguf_name}", "```", "",
                        "With transformers (de-quantizes the weights on load):", "", "```python",
                        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                        f'model = AutoModelForCausalLM.from_pretrained("{where}", gguf_file="{gguf_name}")',
                        f'tokenizer = AutoTokenizer.from_pretrained("{where}", gguf_file="{gguf_name}")', "```", ""]
    if kind == "model":
        return lines + ["```python", f"from transformers import {cls}, AutoTokenizer", "",
                        f'model = {cls}.from_pretrained("{where}")',
                        f'tokenizer = AutoTokenizer.from_pretrained("{where}")', "```", ""]
    base = hub_base or recipe.model.name_or_path
    labels = f", num_labels={num_labels}" if num_labels else ""
    auto = PEFT_AUTO_CLASSES[recipe.task]
    return lines + ["```python", "from peft import PeftModel", f"from transformers import {cls}, AutoTokenizer", "",
                    f'base = {cls}.from_pretrained("{base}"{labels})',
                    f'model = PeftModel.from_pretrained(base, "{where}")',
                    "model = model.merge_and_unload()  # optional: plain weights, faster inference",
                    f'tokenizer = AutoTokenizer.from_pretrained("{where}")', "```", "",
                    "or in one step (the base comes from `base_model_name_or_path` in adapter_config.json): "
                    f'`from peft import {auto}; {auto}.from_pretrained("{where}")`.', ""] + _quantized_base(recipe)


def _quantized_base(recipe) -> list[str]:
    """QLoRA: the adapter merges into a full-precision base as above; this is the base it trained on."""
    q = recipe.model.quantization
    if q is None:
        return []
    if q.bits == 8:
        config = "BitsAndBytesConfig(load_in_8bit=True)"
    else:
        config = (f'BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="{q.type}", '
                  f"bnb_4bit_use_double_quant={q.double_quant})")
    return [f"It was trained on the base quantized to {q.bits} bits (QLoRA). To run or train it on that "
            f"base, as ftcli did, load the base with `quantization_config={config}` (bitsandbytes).", ""]


def base_note(recipe, hub_base: str | None, kind: Kind) -> str:
    m = recipe.model
    if m.from_config is not None:
        return (f"none: a new `{m.from_config.get('architecture')}` model initialised from its config "
                f"(seed {recipe.train.seed})")
    if hub_base:
        return f"[{hub_base}](https://huggingface.co/{hub_base})"
    note = f"`{m.name_or_path}`" + (f" (GGUF file `{m.gguf_file}`)" if m.gguf_file else "") + \
        ", a local directory (not a Hub id)"
    if kind == "adapter":
        note += ("; adapter_config.json names it as the base, so load that model yourself and use "
                 "`PeftModel.from_pretrained`, or re-export with `--base-model HUB_ID`")
    return note
