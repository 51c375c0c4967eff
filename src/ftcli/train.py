"""The one training path: recipe -> data -> model -> TrainingArguments -> Trainer -> saved run.

Tasks differ only in how rows become examples (`preprocess`), which model class loads
(`modeling`) and which metrics `ftcli eval` reports; everything here is shared.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftcli import runs
from ftcli.data import load_splits
from ftcli.errors import DataError, UserError
from ftcli.recipe import Recipe, save_recipe


def log(message: str) -> None:
    # stdout stays free for results (`generate`, `eval --json`); progress goes to stderr.
    print(f"[ftcli] {message}", file=sys.stderr, flush=True)


def training_arguments(recipe: Recipe, run_dir: Path):
    import torch
    from transformers import TrainingArguments

    t = recipe.train
    return TrainingArguments(
        output_dir=str(run_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        save_strategy="steps" if t.save_steps else "epoch",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for it
        report_to=t.report_to,
        eval_strategy="no",
        dataloader_pin_memory=torch.cuda.is_available(),
        # Our examples carry exactly the columns the model takes; nothing to strip.
        remove_unused_columns=False,
    )


def _check_output_dir(run_dir: Path, overwrite: bool) -> str | None:
    """Refuse to overwrite a finished run; return the checkpoint to resume an unfinished one from."""
    if overwrite:
        runs.clear_run(run_dir)
        return None
    if runs.is_finished(run_dir):
        raise UserError(f"{run_dir} already holds a finished run",
                        hint="pass --overwrite to replace it, or set train.output_dir to a new directory")
    if run_dir.is_dir():
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(run_dir))
    return None


def finetune(recipe: Recipe, overwrite: bool = False) -> Path:
    """Train as the recipe says and write the run directory. Returns its path."""
    from transformers import Trainer, set_seed

    from ftcli.modeling import attach_lora, load_model, load_tokenizer, save_final_model
    from ftcli.preprocess import PadCollator, label_mapping, tokenize

    run_dir = Path(recipe.train.output_dir)
    resume = _check_output_dir(run_dir, overwrite)
    splits = load_splits(recipe)
    log(f"task {recipe.task} ({splits.mode}): {len(splits.train)} training rows, {len(splits.eval)} eval rows"
        + (f"; dropped {sum(splits.dropped.values())} incomplete rows" if any(splits.dropped.values()) else ""))

    m = recipe.model
    tokenizer = load_tokenizer(m.name_or_path, m.gguf_file)
    label2id = label_mapping(splits.train, recipe.data.label_field) if splits.mode == "classification" else None
    train_set = tokenize(splits.mode, splits.train, tokenizer, recipe, label2id, recipe.data.train)
    if not train_set.examples:
        raise DataError(f"{recipe.data.train}: no usable training examples after tokenization "
                        f"({train_set.dropped} responses were cut away by max_length={recipe.data.max_length})")
    if train_set.truncated or train_set.dropped:
        log(f"{train_set.truncated} examples truncated to max_length={recipe.data.max_length}"
            + (f", {train_set.dropped} dropped (response cut away)" if train_set.dropped else ""))

    set_seed(recipe.train.seed)  # a new classification head is initialised the same way every run
    model = load_model(recipe.task, m.name_or_path, m.gguf_file, label2id, tokenizer.pad_token_id)
    if recipe.lora:
        model = attach_lora(model, recipe.task, recipe.lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    t = recipe.train
    log(f"model {m.name_or_path}: {trainable:,} of {total:,} parameters trainable"
        f" ({'LoRA r=' + str(recipe.lora.r) if recipe.lora else 'full fine-tune'});"
        f" effective batch size {t.batch_size * t.gradient_accumulation_steps}")

    run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, run_dir / runs.RECIPE_FILE)
    trainer = Trainer(model=model, args=training_arguments(recipe, run_dir),
                      data_collator=PadCollator(tokenizer.pad_token_id),
                      train_dataset=train_set.examples, processing_class=tokenizer)
    if resume:
        log(f"resuming from {Path(resume).name}")
    result = trainer.train(resume_from_checkpoint=resume)

    save_final_model(trainer.model, tokenizer, run_dir, is_lora=recipe.lora is not None)
    metrics = dict(result.metrics)
    metrics.update(train_samples=len(train_set.examples), global_step=result.global_step,
                   mode=splits.mode, train_rows_dropped=splits.dropped,
                   examples_truncated=train_set.truncated, examples_dropped=train_set.dropped)
    runs.write_json(run_dir / runs.TRAIN_RESULTS, metrics)
    log(f"done: train_loss {metrics.get('train_loss', float('nan')):.4f} in {metrics.get('train_runtime', 0):.1f}s;"
        f" model saved to {run_dir / runs.MODEL_DIR}")
    return run_dir
