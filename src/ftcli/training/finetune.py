"""The one training path: recipe -> data -> model -> TrainingArguments -> Trainer -> saved run.

Tasks differ only in how rows become examples (`ftcli.data`), which model class loads
(`ftcli.modeling`) and which metrics `ftcli eval` reports; everything here is shared.
"""

from __future__ import annotations

import errno
from functools import partial
from pathlib import Path

from ftcli import runs
from ftcli.data.collators import data_collator
from ftcli.data.tokenize import saved_tokenizer
from ftcli.errors import Interrupted, UserError
from ftcli.exporting.model_card import refresh_run_cards
from ftcli.io import write_json
from ftcli.modeling.load import load_model
from ftcli.modeling.lora import attach_lora
from ftcli.modeling.precision import Precision
from ftcli.modeling.precision import record as record_precision
from ftcli.modeling.precision import resolve as resolve_precision
from ftcli.modeling.quantization import check_available as check_quantization
from ftcli.modeling.quantization import prepare_for_training, unquantized
from ftcli.modeling.quantization import record as record_quantization
from ftcli.modeling.save import save_final_model
from ftcli.progress import log
from ftcli.recipe import Recipe, save_recipe
from ftcli.reporting.report import refresh_report
from ftcli.training import architectures, distributed, preference, reward, tracking
from ftcli.training.arguments import picks_best_model, training_arguments, training_eval
from ftcli.training.callbacks import GuardCallback, StopSignals
from ftcli.training.display import TrainingDisplay
from ftcli.training.final_model import save_sharded_final_model
from ftcli.training.preflight import PreparedData, prepare_data
from ftcli.training.resume import resume_point
from ftcli.training.run_record import run_record, write_history
from ftcli.training.memory_estimate import parameter_counts
from ftcli.training.run_estimate import peak_record, planned_peak
from ftcli.training.trainer import FtcliTrainer


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


def finetune(recipe: Recipe, overwrite: bool = False, *, callbacks=()) -> Path:
    """Train as the recipe says and write the run directory. Returns its path. `callbacks`: extra
    TrainerCallbacks (a sweep's pruning)."""
    try:
        return _finetune(recipe, overwrite, tuple(callbacks))
    except OSError as exc:
        raise (_disk_error(exc) or exc) from None


def build_model(recipe: Recipe, data: PreparedData, precision: Precision):
    """The model to train: loaded (or built from its config) with the task's head, in the dtype and
    attention `precision` says, LoRA attached."""
    tokenizer = data.tokenizer
    model = load_model(recipe.task, recipe.model, data.label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed,
                       precision)
    model = prepare_for_training(model, recipe.train.gradient_checkpointing)  # QLoRA's base; others as they are
    if recipe.model.from_config:
        log(f"model built from config: {model.num_parameters():,} parameters "
            f"({recipe.model.from_config['architecture']})")
    if recipe.lora:
        model = attach_lora(model, recipe.task, recipe.lora)
    trainable, total = parameter_counts(model)  # a 4-bit weight counts its values, not its packed bytes
    log(f"precision: {str(model.dtype).removeprefix('torch.')} weights, {precision.mixed} mixed precision, "
        f"{architectures.attention(model)} attention")
    t, world = recipe.train, distributed.world_size()
    log(f"model {recipe.model.name_or_path or 'from config'}: {trainable:,} of {total:,} parameters trainable"
        f" ({'LoRA r=' + str(recipe.lora.r) if recipe.lora else 'full fine-tune'});"
        f" effective batch size {global_batch_size(recipe)} = batch_size {t.batch_size} x gradient_accumulation_steps"
        f" {t.gradient_accumulation_steps} x {world} process{'es' if world > 1 else ''}")
    return model


def global_batch_size(recipe: Recipe) -> int:
    t = recipe.train
    return t.batch_size * t.gradient_accumulation_steps * distributed.world_size()


def _stopped(stop: StopSignals, trainer, run_dir: Path) -> Interrupted:
    step = trainer.state.global_step
    stopped = Interrupted(f"stopped by {stop.received or 'a signal to another process'} at step {step}; "
                          f"saved {run_dir / f'checkpoint-{step}'}",
                          hint="run the same `ftcli finetune` command again to resume from there")
    stopped.reported_by_rank0 = not distributed.is_main()  # every rank stops at this step; one says so
    return stopped


def _save_model(recipe: Recipe, data: PreparedData, trainer, run_dir: Path, precision: Precision) -> None:
    tokenizer = saved_tokenizer(data.tokenizer, recipe.task)  # adds the BOS training gave each text
    if distributed.shards_the_model(recipe.distributed):
        save_sharded_final_model(trainer, tokenizer, run_dir, recipe.lora is not None, lambda: load_model(
            recipe.task, recipe.model, data.label2id, tokenizer.pad_token_id, tokenizer, recipe.train.seed, precision))
    elif distributed.is_main():
        # QLoRA: the adapter merges into a full-precision copy of the base, not the 4-bit one it trained on.
        load_base = partial(_full_precision_base, recipe, data, tokenizer, trainer, precision) if recipe.model.quantization else None
        save_final_model(trainer.model, tokenizer, run_dir, is_lora=recipe.lora is not None, load_base=load_base)


def _full_precision_base(recipe: Recipe, data: PreparedData, tokenizer, trainer, precision: Precision):
    """The base a QLoRA adapter merges into, loaded once the trained 4-bit model and its optimizer
    state are gone: holding both would make saving, not training, the run's peak memory."""
    import gc

    trainer.accelerator.free_memory()
    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    _trim_heap()
    return load_model(recipe.task, unquantized(recipe.model), data.label2id, tokenizer.pad_token_id,
                      tokenizer, recipe.train.seed, precision)


def _results(recipe: Recipe, data: PreparedData, trainer, result, resume: Path | None) -> dict:
    """train_results.json: Trainer's metrics and what ftcli knows about the data and the run."""
    splits, train_set = data.splits, data.train_set
    metrics = dict(result.metrics)
    metrics.update(train_samples=train_set.examples_made if recipe.data.streaming else len(train_set.examples),
                   global_step=result.global_step, world_size=distributed.world_size(),
                   global_batch_size=global_batch_size(recipe), mode=splits.mode, format=splits.format,
                   data_cleaning=splits.cleaning, data_sources=splits.sources,
                   resumed_from=resume.name if resume else None,
                   examples_truncated=train_set.truncated, examples_dropped=train_set.dropped,
                   nonfinite_batches_skipped=trainer.skipped_batches, **_best_model_record(trainer, recipe))
    return metrics


def _trim_heap() -> None:
    """Hand the pages of freed buffers back to the OS (glibc's malloc_trim). glibc keeps them for reuse,
    and the full-precision base is mostly file pages, which would not reuse them: without this, saving a
    QLoRA run on a CPU peaks above its training. A no-op without glibc."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _trainer(recipe: Recipe, data: PreparedData, model, run_dir: Path, precision: Precision, callbacks, evaluation):
    t = recipe.train
    return FtcliTrainer(model=model, args=training_arguments(recipe, run_dir, precision),
                        data_collator=data_collator(recipe, data.tokenizer),
                        train_dataset=data.train_set.examples, processing_class=data.tokenizer,
                        callbacks=callbacks, on_nonfinite_loss=t.on_nonfinite_loss,
                        **architectures.loss_levers(model, recipe.task == "causal-lm",
                                                    t.micro_batch_tokens, log, liger=t.liger_kernel),
                        **evaluation)


def _preference_trainer(recipe: Recipe, data: PreparedData, model, run_dir: Path, precision: Precision, callbacks,
                        evaluation):
    """TRL's preference trainer for the method, under ftcli's guards, on examples tokenized by ftcli
    (`training.preference`)."""
    def load(name_or_path: str):
        source = recipe.model.model_copy(update={"name_or_path": name_or_path, "quantization": None})
        return load_model(recipe.task, source, None, data.tokenizer.pad_token_id, data.tokenizer,
                          recipe.train.seed, precision).eval()

    method, t = recipe.preference.method, recipe.train
    if "eval_dataset" in evaluation:
        evaluation["eval_dataset"] = preference.as_dataset(
            preference.examples_for(recipe, evaluation["eval_dataset"], t.eval_batch_size or t.batch_size))
    examples = preference.examples_for(recipe, data.train_set.examples, t.batch_size)
    args = training_arguments(recipe, run_dir, precision, preference.config_class(method),
                              **preference.trainer_options(recipe), **preference.sampling_options(recipe))
    if preference.takes_reference(method):
        evaluation["ref_model"] = preference.reference_model(recipe, load)
    return preference.trainer_class(method)(
        model=model, args=args, train_dataset=preference.as_dataset(examples), processing_class=data.tokenizer,
        callbacks=callbacks, on_nonfinite_loss=t.on_nonfinite_loss, causal_lm=False, micro_batch_tokens=None,
        lengths=preference.pair_lengths(examples), **evaluation)


def _reward_trainer(recipe: Recipe, data: PreparedData, model, run_dir: Path, precision: Precision, callbacks,
                    evaluation):
    """TRL's RewardTrainer under ftcli's guards, on pairs tokenized by ftcli (`training.reward`)."""
    if "eval_dataset" in evaluation:
        evaluation["eval_dataset"] = preference.as_dataset(reward.sequences(evaluation["eval_dataset"]))
    examples = reward.sequences(data.train_set.examples)
    args = training_arguments(recipe, run_dir, precision, reward.reward_config_class(), **reward.reward_options(recipe))
    return reward.reward_trainer_class()(
        model=model, args=args, train_dataset=preference.as_dataset(examples), processing_class=data.tokenizer,
        callbacks=callbacks, on_nonfinite_loss=recipe.train.on_nonfinite_loss, causal_lm=False,
        micro_batch_tokens=None, lengths=[reward.sequence_length(e) for e in examples], **evaluation)


def _finetune(recipe: Recipe, overwrite: bool, extra_callbacks: tuple = ()) -> Path:
    from transformers import set_seed

    run_dir = Path(recipe.train.output_dir)
    if recipe.sweep is not None:
        log("the recipe's sweep: section is for `ftcli sweep`; finetune trains the recipe as written")
    tracking.check_installed(recipe.train.report_to)
    check_quantization(recipe.model.quantization)  # bitsandbytes installed, a device it runs on
    preference.check_installed(recipe)  # TRL, for a preference: recipe
    precision = resolve_precision(recipe)  # this machine can run the recipe's dtype, kernels, optimizer
    distributed.check_engine(recipe.distributed)
    distributed.start()
    # Rank 0 alone decides (and tidies) what to resume from; every rank then resumes from it.
    resume = distributed.share_from_main(lambda: resume_point(recipe, run_dir, overwrite))
    # Rank 0 fills the data caches and trains any tokenizer first; the others then find them ready.
    with distributed.main_process_first():
        data = prepare_data(recipe, log)
    planned = planned_peak(recipe, data, precision, log)  # before the model (its baseline) and the seed
    set_seed(recipe.train.seed)  # a new classification head is initialised the same way every run
    model = build_model(recipe, data, precision)
    trained_in = record_precision(precision, model, architectures.attention(model))
    trained_in["quantization"] = record_quantization(recipe.model.quantization, precision)
    if recipe.data.packing:  # before training: packed examples must not see each other
        architectures.check_packing(model)

    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / runs.RECIPE_FILE)
    evaluation = training_eval(recipe, data.eval_set.examples, data.label2id)
    with StopSignals(log) as stop, tracking.session(recipe, run_dir, log) as recipe_params, \
            TrainingDisplay() as display:
        guard = GuardCallback(stop)
        callbacks = [guard, recipe_params] + evaluation.pop("callbacks") + list(extra_callbacks)
        build = _preference_trainer if recipe.preference else _reward_trainer if recipe.task == "reward-model" \
            else _trainer
        trainer = build(recipe, data, model, run_dir, precision, callbacks, evaluation)
        display.take_over(trainer)  # our bar or lines on stderr, not Trainer's printed dicts
        if resume:
            log(f"resuming from {resume.name}")
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.received or guard.stopped:
        raise _stopped(stop, trainer, run_dir)

    del model  # the trainer's reference is the one left, which saving a QLoRA run releases
    _save_model(recipe, data, trainer, run_dir, precision)
    if not distributed.is_main():
        distributed.finish()  # rank 0 writes the results; the others are done
        return run_dir
    metrics = {**_results(recipe, data, trainer, result, resume), **trained_in,
               **peak_record(planned, precision.device, log), **run_record(data.train_set, precision.device)}
    write_history(trainer, run_dir)  # before train_results.json: a finished run always has its curves
    write_json(run_dir / runs.TRAIN_RESULTS, metrics)
    refresh_run_cards(run_dir, log)  # model/README.md (and adapter/README.md): the model card
    refresh_report(run_dir, log)  # report.html and loss.png; a warning, never a lost run, if it fails
    log(f"done: train_loss {metrics.get('train_loss', float('nan')):.4f} in {metrics.get('train_runtime', 0):.1f}s;"
        f" model saved to {run_dir / runs.MODEL_DIR}")
    distributed.finish()
    return run_dir
