"""The final model of a run: `adapter/` (LoRA only) and `model/` (full weights, LoRA merged in, with
the tokenizer), each written whole or not at all."""

from __future__ import annotations

from pathlib import Path

from ftcli.io import write_dir


def save_final_model(model, tokenizer, run_dir: Path, is_lora: bool) -> None:
    """Save `adapter/` (LoRA only) and `model/` (full weights, LoRA merged in) with the tokenizer."""
    if is_lora:
        write_dir(model.save_pretrained, run_dir / "adapter")
        model = model.merge_and_unload()

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    write_dir(save_model, run_dir / "model")
