"""Before any training: what `finetune` checks and prepares, for `ftcli validate` (no weights loaded)
and `ftcli data preview` (the very examples training will see), and for `finetune` itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftcli.data.prepare import prepare_splits
from ftcli.data.preview import DataPreview, describe
from ftcli.data.rows_cache import load_splits_cached
from ftcli.data.splits import Splits, load_splits
from ftcli.data import templates
from ftcli.data.sources import describe_source
from ftcli.data.tokenize import label_mapping
from ftcli.data.tokenize_pairs import check_pair_rows
from ftcli.modeling.load import check_model_source
from ftcli.modeling.precision import resolve as resolve_precision
from ftcli.modeling.quantization import check_available as check_quantization
from ftcli.modeling.tokenizer_training import run_tokenizer
from ftcli.progress import log
from ftcli.recipe import Recipe
from ftcli.training.preference import check_installed as check_preference_installed
from ftcli.training.tracking import check_installed


@dataclass
class PreparedData:
    """A run's data as training uses it: rows, tokenizer, class labels and tokenized examples."""

    splits: Splits
    tokenizer: Any
    label2id: dict[str, int] | None
    train_set: Any  # tokenize.Tokenized, or a streaming.TokenizedStream
    eval_set: Any


def prepare_data(recipe: Recipe, log=log) -> PreparedData:
    """Rows (through the rows cache), the run's tokenizer (trained here for tokenizer.train), label
    ids, and the tokenized examples (through the tokenized-data cache)."""
    splits = load_splits_cached(recipe, log)
    rows = "streamed" if recipe.data.streaming else len(splits.train)
    log(f"task {recipe.task} ({splits.format}): {rows} training rows, {len(splits.eval)} eval rows"
        + (f"; dropped {splits.dropped_summary()}" if splits.rows_dropped else ""))
    tokenizer = run_tokenizer(recipe, splits, log)
    if splits.mode in ("sft", "preference"):  # as `ftcli validate` says it
        template = recipe.data.template
        log(f"prompt format: {templates.describe(templates.resolve(tokenizer, template), template)}")
    label2id = label_mapping(splits.train, recipe.data.label_field) if splits.mode == "classification" else None
    train_set, eval_set = prepare_splits(recipe, splits, tokenizer, label2id, log)
    return PreparedData(splits, tokenizer, label2id, train_set, eval_set)


def validate(recipe: Recipe) -> dict:
    """Check the data (files, fields, rows) and that the model resolves. Returns what training would
    use; raises a UserError subclass naming the first thing that would stop it."""
    check_installed(recipe.train.report_to)
    precision = resolve_precision(recipe)  # what this machine cannot run fails before the data is read
    check_quantization(recipe.model.quantization)  # bitsandbytes installed, a device it runs on
    check_preference_installed(recipe)  # TRL, for a preference: recipe
    splits = load_splits(recipe)
    if recipe.model.from_config:
        model = f"a new {recipe.model.from_config['architecture']} model (model.from_config)"
    else:
        model = check_model_source(recipe.model.name_or_path, recipe.model.gguf_file)
    prompt_format = None
    if splits.mode == "sft":
        # The check tokenize_sft runs before tokenizing: a chat file on a model without a chat
        # template fails here as it would in finetune.
        kind = templates.check_rows(run_tokenizer(recipe, splits), recipe.data, splits.format, splits.train,
                                    describe_source(recipe.data.train))
        prompt_format = templates.describe(kind, recipe.data.template)
    elif splits.mode == "preference":
        kind = check_pair_rows(run_tokenizer(recipe, splits), recipe, splits.format, splits.train,
                               describe_source(recipe.data.train))
        prompt_format = templates.describe(kind, recipe.data.template)
    return {"prompt_format": prompt_format, "task": recipe.task, "mode": splits.mode, "train_rows": len(splits.train),
            "eval_rows": len(splits.eval), "dropped_rows": splits.rows_dropped,
            "dropped": splits.dropped_summary(), "format": splits.format, "cleaning": splits.cleaning,
            "fields": splits.columns, "model": model, "lora": recipe.lora is not None,
            "precision": {"dtype": precision.dtype, "precision": precision.mixed,
                          "attn_implementation": precision.attention or "auto"},
            "output_dir": recipe.train.output_dir}


def preview_data(recipe: Recipe, n: int = 3) -> DataPreview:
    """Read, clean and tokenize the recipe's data as `finetune` would; describe the first `n` examples."""
    data = prepare_data(recipe)
    return describe(recipe, data.splits, data.tokenizer, data.label2id, data.train_set, n)


def validation_text(source, report: dict) -> str:
    """What `ftcli validate` prints for `validate`'s report."""
    mode = {"sft": f"SFT ({report['format'].replace('_', '/')}, loss on responses)",
            "text": "plain-text language modelling", "classification": "sequence classification",
            "seq2seq": "sequence to sequence (source → target)",
            "preference": f"preference tuning ({report['format'].replace('_', ' ')} pairs)"}[report["mode"]]
    if report["task"] == "reward-model":
        mode = f"reward model ({report['format'].replace('_', ' ')} pairs)"
    return (f"{source}: ok\n  task:   {report['task']} — {mode}\n"
            f"  data:   {report['train_rows']} train rows, {report['eval_rows']} eval rows"
            + (f"; dropped {report['dropped']}" if report["dropped_rows"] else "")
            + (f"\n  prompt: {report['prompt_format']}" if report["prompt_format"] else "")
            + f"\n  model:  {report['model']}{' + LoRA' if report['lora'] else ''}"
            + f"\n  dtype:  {report['precision']['dtype']} weights, {report['precision']['precision']} mixed precision,"
            f" {report['precision']['attn_implementation']} attention"
            f"\n  output: {report['output_dir']}")
