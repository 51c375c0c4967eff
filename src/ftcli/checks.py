"""`ftcli validate`: everything that can be checked before training, without loading weights."""

from __future__ import annotations

from ftcli.data import load_splits
from ftcli.modeling import check_model_source
from ftcli.recipe import Recipe


def validate(recipe: Recipe) -> dict:
    """Check the data (files, fields, rows) and that the model resolves. Returns what training would
    use; raises a UserError subclass naming the first thing that would stop it."""
    splits = load_splits(recipe)
    model = check_model_source(recipe.model.name_or_path, recipe.model.gguf_file)
    prompt_format = None
    if splits.mode == "sft":
        from ftcli.modeling import load_tokenizer
        from ftcli.preprocess import uses_chat_template

        chat = uses_chat_template(load_tokenizer(recipe.model), recipe.data.template)
        prompt_format = "the tokenizer's chat template" if chat else "plain (prompt, newline, response)"
    return {"prompt_format": prompt_format,"task": recipe.task, "mode": splits.mode, "train_rows": len(splits.train),
            "eval_rows": len(splits.eval), "dropped_rows": sum(splits.dropped.values()),
            "fields": splits.columns, "model": model, "lora": recipe.lora is not None,
            "output_dir": recipe.train.output_dir}
