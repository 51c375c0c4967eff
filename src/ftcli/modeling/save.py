"""The final model of a run: `adapter/` (LoRA only) and `model/` (full weights, LoRA merged in, with
the tokenizer), each written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from ftcli.io import write_dir


def save_final_model(model, tokenizer, run_dir: Path, is_lora: bool, load_base=None) -> None:
    """Save `adapter/` (LoRA only) and `model/` (full weights, LoRA merged in) with the tokenizer.
    `load_base()`, when given, is a fresh full-precision base to merge the saved adapter into: a
    quantized (QLoRA) base merged in place would give 4-bit weights rounded once more, which need
    bitsandbytes to load and lose the adapter's small updates."""
    if is_lora:
        write_dir(model.save_pretrained, run_dir / "adapter")
        if load_base:
            model = None  # this reference goes before the base arrives (load_base frees the others)
            model = merged_into(load_base(), run_dir / "adapter")
        else:
            model = model.merge_and_unload()

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    write_dir(save_model, run_dir / "model")


def merged_into(base, adapter_dir: Path):
    """A saved adapter merged into `base`: plain weights, no peft needed to load them."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
