"""`ftcli generate`: text from a run's tuned model (or its base), prompted as in training."""

from __future__ import annotations

from pathlib import Path

from ftcli import runs
from ftcli.errors import UserError
from ftcli.recipe import GenerateSection


def generate(prompt: str, target: str | Path | None = None, base: bool = False,
             max_new_tokens: int | None = None, temperature: float | None = None,
             top_p: float | None = None, seed: int | None = None) -> str:
    """Generate a reply to `prompt`. Unset options come from the run recipe's `generate:` section."""
    import torch
    from transformers import set_seed

    from ftcli.modeling import load_model, load_tokenizer, local_model
    from ftcli.preprocess import format_prompt, prompt_token_ids, uses_chat_template

    run_dir = runs.resolve_run(target)
    recipe = runs.load_run_recipe(run_dir)
    if recipe.task != "causal-lm":
        raise UserError(f"{run_dir} is a {recipe.task} run; generate needs a causal-lm run",
                        hint="use `ftcli eval` for classification runs")
    g: GenerateSection = recipe.generate.model_copy(update={k: v for k, v in {
        "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}.items() if v is not None})

    tuned = local_model(run_dir / runs.MODEL_DIR)
    tokenizer = load_tokenizer(tuned)
    model = load_model("causal-lm", recipe.model if base else tuned).eval()

    mode = (runs.read_train_results(run_dir) or {}).get("mode", "sft")
    # Plain-text runs learned continuation; SFT runs learned to answer a formatted prompt.
    if mode == "sft":
        text = format_prompt(tokenizer, prompt, g.system_prompt, uses_chat_template(tokenizer, recipe.data.template))
    else:
        text = prompt
    ids = torch.tensor([prompt_token_ids(tokenizer, text)])
    set_seed(recipe.train.seed if seed is None else seed)
    sampling = {"do_sample": True, "temperature": g.temperature, "top_p": g.top_p} if g.temperature > 0 \
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=g.max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
