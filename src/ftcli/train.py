"""The one training path: recipe -> data -> model -> TrainingArguments -> Trainer -> saved run.

Tasks differ only in how rows become examples (`preprocess`), which model class loads
(`modeling`) and which metrics `ftcli eval` reports; everything here is shared.
"""

from __future__ import annotations

import errno
from pathlib import Path

import yaml

from ftcli import checkpoints, distributed, runs
from ftcli.errors import Interrupted, UserError
from ftcli.progress import log
from ftcli.recipe import Recipe, save_recipe


def training_arguments(recipe: Recipe, run_dir: Path):
    import torch
    from transformers import TrainingArguments

    t = recipe.train
    eval_steps = t.eval_steps or t.logging_steps
    best = picks_best_model(recipe)
    # Choosing the best model means saving exactly when evaluating, so every candidate is on disk.
    save_strategy = t.eval_strategy if best else ("steps" if t.save_steps else "epoch")
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
        save_strategy=save_strategy,
        save_steps=eval_steps if best else (t.save_steps or 500),
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for it
        # Similar lengths in a batch: little padding to compute (transformers 5's name for group_by_length).
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        dataloader_num_workers=t.dataloader_num_workers,
        torch_compile=t.torch_compile,
        report_to=t.report_to,
        eval_strategy=t.eval_strategy,
        eval_steps=eval_steps,
        load_best_model_at_end=best,
        metric_for_best_model=t.metric_for_best_model,
        greater_is_better=t.metric_for_best_model not in ("loss", "perplexity"),
        # A language model's eval needs only the loss (perplexity follows); keeping vocabulary-sized
        # logits for every eval token would cost gigabytes. (seq2seq generation metrics: `ftcli eval`.)
        prediction_loss_only=recipe.task in ("causal-lm", "seq2seq", "masked-lm"),
        dataloader_pin_memory=torch.cuda.is_available(),
        # Our examples carry exactly the columns the model takes; nothing to strip.
        remove_unused_columns=False,
        # Under a launcher on a machine without GPUs, only use_cpu makes Trainer join the gloo group.
        use_cpu=distributed.use_cpu(),
        **distributed_options(recipe),
    )


def distributed_options(recipe: Recipe) -> dict:
    """The recipe's `distributed:` section, passed to TrainingArguments as is (its keys are
    TrainingArguments' own names); unset keys keep Trainer's defaults."""
    if recipe.distributed is None:
        return {}
    return {key: value for key, value in recipe.distributed.model_dump().items() if value is not None}


def data_collator(recipe: Recipe, tokenizer):
    """Batches for the task: padded, and for masked-lm with tokens hidden (seeded by train.seed)."""
    if recipe.task == "masked-lm":
        from ftcli.masking import MaskingCollator

        return MaskingCollator(tokenizer, recipe.data.mlm_probability, recipe.train.seed)
    if recipe.data.packing:
        from ftcli.packing import PackingCollator

        return PackingCollator()
    from ftcli.preprocess import PadCollator

    return PadCollator(tokenizer.pad_token_id)


def picks_best_model(recipe: Recipe) -> bool:
    return recipe.train.load_best_model_at_end or recipe.train.early_stopping_patience is not None


def _training_eval(recipe: Recipe, eval_examples: list, label2id: dict | None) -> dict:
    """Trainer options for evaluating during training: metrics, and early stopping."""
    from transformers import EarlyStoppingCallback

    t = recipe.train
    if t.eval_strategy == "no":
        return {"callbacks": []}
    if not eval_examples:
        raise UserError(f"train.eval_strategy is '{t.eval_strategy}' but there is no eval data",
                        hint="set data.eval, or data.eval_fraction above 0")
    options: dict = {"eval_dataset": eval_examples, "callbacks": []}
    if label2id is not None:
        names = list(dict.fromkeys(recipe.eval.metrics + [t.metric_for_best_model]))
        options["compute_metrics"] = _classification_metrics([n for n in names if n != "loss"], len(label2id))
        # Keep only predicted class ids, not the logits, across the eval set.
        options["preprocess_logits_for_metrics"] = lambda logits, labels: logits.argmax(-1)
    if t.early_stopping_patience:
        options["callbacks"].append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    return options


def _classification_metrics(names: list[str], num_labels: int):
    def compute(prediction) -> dict:
        from ftcli.metrics import compute_classification_metrics

        return compute_classification_metrics(names, prediction.predictions, prediction.label_ids, num_labels)

    return compute


def _resume_point(recipe: Recipe, run_dir: Path, overwrite: bool) -> Path | None:
    """Refuse what must not happen to `run_dir`; return the checkpoint to resume from, if any."""
    runs.check_output_dir(run_dir)
    if overwrite:
        runs.clear_run(run_dir)
        return None
    if runs.is_finished(run_dir):
        raise UserError(f"{run_dir} already holds a finished run",
                        hint="pass --overwrite to replace it, or set train.output_dir to a new directory")
    checkpoint = checkpoints.last_complete(run_dir, warn=log)
    saved = run_dir / runs.RECIPE_FILE
    if checkpoint is None or not saved.is_file():
        return None
    blocking, harmless = checkpoints.recipe_changes(yaml.safe_load(saved.read_text(encoding="utf-8")),
                                                    recipe.model_dump(mode="json"))
    if blocking:
        raise UserError(f"cannot resume {run_dir} from {checkpoint.name}: the recipe changed in a way that "
                        f"breaks resuming: {', '.join(blocking)}",
                        hint="restore those keys to resume, or pass --overwrite to start again")
    if harmless:
        log(f"recipe changed since the checkpoint (allowed on resume): {', '.join(harmless)}")
    return checkpoint


def _best_model_record(trainer, recipe: Recipe) -> dict:
    """Which checkpoint model/ came from, when training selected the best one."""
    state = trainer.state
    if not picks_best_model(recipe) or not state.best_model_checkpoint:
        return {}
    return {"best_checkpoint": Path(state.best_model_checkpoint).name, "best_step": state.best_global_step,
            f"best_eval_{recipe.train.metric_for_best_model}": state.best_metric}


def _disk_error(exc: OSError) -> UserError | None:
    """Disk full, permissions, read-only: the user's to fix, reported with the path."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write {exc.filename or 'the run directory'}: {exc.strerror}")
    return None


def finetune(recipe: Recipe, overwrite: bool = False) -> Path:
    """Train as the recipe says and write the run directory. Returns its path."""
    try:
        return _finetune(recipe, overwrite)
    except OSError as exc:
        raise (_disk_error(exc) or exc) from None


def _finetune(recipe: Recipe, overwrite: bool) -> Path:
    from transformers import set_seed

    from ftcli import tracking
    from ftcli.guards import FtcliTrainer, GuardCallback, StopSignals
    from ftcli.modeling import attach_lora, load_model, save_final_model, save_sharded_final_model
    from ftcli.prep_cache import prepare_splits
    from ftcli.preprocess import label_mapping
    from ftcli.rows_cache import load_splits_cached
    from ftcli.tokenizer_training import run_tokenizer

    run_dir = Path(recipe.train.output_dir)
    tracking.check_installed(recipe.train.report_to)
    distributed.check_engine(recipe.distributed)
    distributed.start()
    # Rank 0 alone decides (and tidies) what to resume from; every rank then resumes from it.
    resume = distributed.share_from_main(lambda: _resume_point(recipe, run_dir, overwrite))
    # Rank 0 fills the data caches and trains any tokenizer first; the others then find them ready.
    with distributed.main_process_first():
        splits = load_splits_cached(recipe, log)
        rows = "streamed" if recipe.data.streaming else len(splits.train)
        log(f"task {recipe.task} ({splits.format}): {rows} training rows, {len(splits.eval)} eval rows"
            + (f"; dropped {splits.dropped_summary()}" if splits.rows_dropped else ""))

        tokenizer = run_tokenizer(recipe, splits, log)
        label2id = label_mapping(splits.train, recipe.data.label_field) if splits.mode == "classification" else None
        train_set, eval_set = prepare_splits(recipe, splits, tokenizer, label2id, log)

    set_seed(recipe.train.seed)  # a new classification head is initialised the same way every run
    model = load_model(recipe.task, recipe.model, label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed)
    if recipe.model.from_config:
        log(f"model built from config: {model.num_parameters():,} parameters "
            f"({recipe.model.from_config['architecture']})")
    if recipe.lora:
        model = attach_lora(model, recipe.task, recipe.lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    t = recipe.train
    world = distributed.world_size()
    global_batch = t.batch_size * t.gradient_accumulation_steps * world
    log(f"model {recipe.model.name_or_path or 'from config'}: {trainable:,} of {total:,} parameters trainable"
        f" ({'LoRA r=' + str(recipe.lora.r) if recipe.lora else 'full fine-tune'});"
        f" effective batch size {global_batch} = batch_size {t.batch_size} x gradient_accumulation_steps"
        f" {t.gradient_accumulation_steps} x {world} process{'es' if world > 1 else ''}")

    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / runs.RECIPE_FILE)
    evaluation = _training_eval(recipe, eval_set.examples, label2id)
    with StopSignals(log) as stop, tracking.session(recipe, run_dir, log) as recipe_params:
        guard = GuardCallback(stop)
        callbacks = [guard, recipe_params] + evaluation.pop("callbacks")
        trainer = FtcliTrainer(model=model, args=training_arguments(recipe, run_dir),
                               data_collator=data_collator(recipe, tokenizer),
                               train_dataset=train_set.examples, processing_class=tokenizer,
                               callbacks=callbacks, on_nonfinite_loss=t.on_nonfinite_loss,
                               causal_lm=recipe.task == "causal-lm", micro_batch_tokens=t.micro_batch_tokens,
                               **evaluation)
        if resume:
            log(f"resuming from {resume.name}")
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.received or guard.stopped:
        stopped = Interrupted(f"stopped by {stop.received or 'a signal to another process'} at step {trainer.state.global_step}; "
                              f"saved {run_dir / f'checkpoint-{trainer.state.global_step}'}",
                              hint="run the same `ftcli finetune` command again to resume from there")
        stopped.reported_by_rank0 = not distributed.is_main()  # every rank stops at this step; one says so
        raise stopped

    if distributed.shards_the_model(recipe.distributed):
        save_sharded_final_model(trainer, tokenizer, run_dir, recipe.lora is not None, lambda: load_model(
            recipe.task, recipe.model, label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed))
    elif distributed.is_main():
        save_final_model(trainer.model, tokenizer, run_dir, is_lora=recipe.lora is not None)
    if not distributed.is_main():
        distributed.finish()  # rank 0 writes the results; the others are done
        return run_dir
    metrics = dict(result.metrics)
    metrics.update(train_samples=train_set.examples_made if recipe.data.streaming else len(train_set.examples),
                   global_step=result.global_step, world_size=world, global_batch_size=global_batch,
                   mode=splits.mode, format=splits.format, data_cleaning=splits.cleaning, data_sources=splits.sources,
                   resumed_from=resume.name if resume else None,
                   examples_truncated=train_set.truncated, examples_dropped=train_set.dropped,
                   nonfinite_batches_skipped=trainer.skipped_batches, **_best_model_record(trainer, recipe))
    runs.write_json(run_dir / runs.TRAIN_RESULTS, metrics)
    from ftcli.model_card import refresh_run_cards

    refresh_run_cards(run_dir, log)  # model/README.md (and adapter/README.md): the model card
    log(f"done: train_loss {metrics.get('train_loss', float('nan')):.4f} in {metrics.get('train_runtime', 0):.1f}s;"
        f" model saved to {run_dir / runs.MODEL_DIR}")
    distributed.finish()
    return run_dir
