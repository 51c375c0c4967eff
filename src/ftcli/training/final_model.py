"""The final model of a sharded (FSDP, DeepSpeed) run: gathered by Trainer on every rank, written by
rank 0."""

from __future__ import annotations

import shutil
from pathlib import Path

from ftcli.modeling.save import save_final_model
from ftcli.training import distributed


def save_sharded_final_model(trainer, tokenizer, run_dir: Path, is_lora: bool, load_base) -> None:
    """`save_final_model` for FSDP and DeepSpeed runs, where no process may hold the whole model:
    Trainer gathers it (every rank must call this), and rank 0 writes. A LoRA adapter is merged into
    a fresh copy of the base model (`load_base()`), as the sharded one cannot be merged in place."""
    target = run_dir / ("adapter" if is_lora else "model")
    tmp = target.with_name(f".{target.name}.tmp")
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # collective: gathers the shards, writes on rank 0
    if not distributed.is_main():
        return
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    if is_lora:
        from peft import PeftModel

        merged = PeftModel.from_pretrained(load_base(), target).merge_and_unload()
        save_final_model(merged, tokenizer, run_dir, is_lora=False)
