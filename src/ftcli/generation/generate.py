"""The library's `generate`: answers from a run's tuned model (or its base, or any model)."""

from __future__ import annotations

from pathlib import Path

from ftcli.generation.batched import iter_generate
from ftcli.generation.load import load_for_generation


def generate(prompt: str, target: str | Path | None = None, base: bool = False, model: str | None = None,
             **options) -> str:
    """Generate a reply to `prompt` with a run's tuned model (`base`: its base model; `model`: any
    model, no run). Unset options (max_new_tokens, temperature, top_p, top_k, repetition_penalty,
    num_return_sequences, stop, seed, system_prompt, template, few_shot) come from the run recipe's
    `generate:` section. Returns the first answer; `generate_all` returns every answer."""
    return generate_all([prompt], target, base=base, model=model, **options)[0][0]


def generate_all(prompts: list[str], target: str | Path | None = None, base: bool = False,
                 model: str | None = None, **options) -> list[list[str]]:
    """Every answer (num_return_sequences of them) for each prompt, batched."""
    loaded = load_for_generation(target, base=base, model=model, **options)
    m, tokenizer, settings, chat, mode = loaded
    return list(iter_generate(m, tokenizer, prompts, settings, chat, settings.batch_size, mode))
