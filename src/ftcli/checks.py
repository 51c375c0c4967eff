"""`ftcli validate`: everything that can be checked before training, without loading weights."""

from __future__ import annotations

from ftcli.data import load_splits
from ftcli.modeling import check_model_source
from ftcli.recipe import Recipe


def validate(recipe: Recipe) -> dict:
    """Check the data (files, fields, rows) and that the model resolves. Returns what training would
    use; raises a UserError subclass naming the first thing that would stop it."""
    from ftcli.tracking import check_installed

    check_installed(recipe.train.report_to)
    splits = load_splits(recipe)
    if recipe.model.from_config:
        model = f"a new {recipe.model.from_config['architecture']} model (model.from_config)"
    else:
        model = check_model_source(recipe.model.name_or_path, recipe.model.gguf_file)
    prompt_format = None
    if splits.mode == "sft":
        from ftcli.preprocess import uses_chat_template
        from ftcli.tokenizer_training import run_tokenizer

        chat = uses_chat_template(run_tokenizer(recipe, splits), recipe.data.template)
        prompt_format = "the tokenizer's chat template" if chat else "plain (prompt, newline, response)"
    return {"prompt_format": prompt_format,"task": recipe.task, "mode": splits.mode, "train_rows": len(splits.train),
            "eval_rows": len(splits.eval), "dropped_rows": splits.rows_dropped,
            "dropped": splits.dropped_summary(), "format": splits.format, "cleaning": splits.cleaning,
            "fields": splits.columns, "model": model, "lora": recipe.lora is not None,
            "output_dir": recipe.train.output_dir}
