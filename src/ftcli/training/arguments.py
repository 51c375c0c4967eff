"""A recipe's `train:` (and `distributed:`) section as TrainingArguments, and the Trainer options for
evaluating during training (metrics, early stopping)."""

from __future__ import annotations

from pathlib import Path

from ftcli.errors import UserError
from ftcli.evaluation.metrics import compute_classification_metrics
from ftcli.modeling.precision import Precision
from ftcli.modeling.precision import resolve as resolve_precision
from ftcli.recipe import Recipe
from ftcli.training import distributed


def training_arguments(recipe: Recipe, run_dir: Path, precision: Precision | None = None, arguments_class=None,
                       **options):
    """`precision`: the recipe's precision on this machine (`modeling.precision.resolve`, which
    finetune runs before any work); resolved here when not given. `arguments_class`: a subclass of
    TrainingArguments (TRL's DPOConfig) given `options`, its own fields; every field ftcli sets is set
    explicitly, so a subclass's other defaults (TRL's bf16, checkpointing) never apply unasked."""
    import torch
    from transformers import TrainingArguments

    t = recipe.train
    precision = precision or resolve_precision(recipe)
    eval_steps = t.eval_steps or t.logging_steps
    best = picks_best_model(recipe)
    # Choosing the best model means saving exactly when evaluating, so every candidate is on disk.
    save_strategy = t.eval_strategy if best else ("steps" if t.save_steps else "epoch")
    settings = dict(
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
        # Progress is ftcli's (`display`): Trainer adds only its plain printer, which display removes.
        disable_tqdm=True,
        # Non-padding tokens trained, for the tokens/s the display shows (one count per batch). Packed
        # rows have no padding and no attention mask: Trainer would count token != pad, missing every
        # EOS where pad is EOS; there every token is real.
        include_num_input_tokens_seen="all" if recipe.data.packing else "non_padding",
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5's name for it
        # Non-reentrant checkpointing passes gradients through frozen layers to LoRA adapters (and 4-bit
        # ones) without every input needing requires_grad; transformers' default today, fixed here.
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        **({"optim": t.optim} if t.optim else {}),
        use_liger_kernel=t.liger_kernel,
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
        prediction_loss_only=recipe.task in ("causal-lm", "seq2seq", "masked-lm", "reward-model"),
        dataloader_pin_memory=torch.cuda.is_available(),
        # Our examples carry exactly the columns the model takes; nothing to strip.
        remove_unused_columns=False,
        **_device_options(precision),
        **distributed_options(recipe),
    )
    # `options`: the trainer's own config fields (TRL's), and any of the above it must set its way.
    return (arguments_class or TrainingArguments)(**{**settings, **options})


def _device_options(precision: Precision) -> dict:
    """Mixed precision (bf16/fp16) and use_cpu. Under a launcher on a machine without GPUs, only use_cpu
    makes Trainer join the gloo group; bf16 on a CPU needs it too."""
    options = precision.training_kwargs()
    options["use_cpu"] = options.get("use_cpu", False) or distributed.use_cpu()
    return options


def distributed_options(recipe: Recipe) -> dict:
    """The recipe's `distributed:` section, passed to TrainingArguments as is (its keys are
    TrainingArguments' own names); unset keys keep Trainer's defaults."""
    if recipe.distributed is None:
        return {}
    return {key: value for key, value in recipe.distributed.model_dump().items() if value is not None}


def picks_best_model(recipe: Recipe) -> bool:
    return recipe.train.load_best_model_at_end or recipe.train.early_stopping_patience is not None


def training_eval(recipe: Recipe, eval_examples: list, label2id: dict | None) -> dict:
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
        return compute_classification_metrics(names, prediction.predictions, prediction.label_ids, num_labels)

    return compute
