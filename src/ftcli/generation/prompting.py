"""Prompting for generation: the exact text a model continues for a user prompt, built from the
recipe's `generate:` settings (checked here) and its few-shot examples (read here).

Prompt formats (one function, `format_generation_prompt`, builds them all):

* chat (`chat` is True: the tokenizer's chat template; a string: that Jinja template, e.g. ChatML
  for `data.template: chatml`): `generate.system_prompt` as a system message and `generate.few_shot`
  pairs as earlier user/assistant turns — exactly `preprocess.format_prompt` when there are no
  examples, so a tuned model is asked in the shape it was trained on;
* plain SFT runs: the prompt and a newline (as in training), or `generate.template`
  (e.g. "Q: {prompt}\\nA:") when set — for runs trained with the alpaca or a custom data.template,
  `generation_prompts.generation_format` sets it to that format; few-shot examples are the same blocks, each
  followed by its response and a blank line;
* plain-text (continuation) runs and base models used with `--model`: the prompt itself (or the
  template), continued.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ftcli.data.chats import as_tools, tools_problem
from ftcli.data.readers import iter_jsonl
from ftcli.data.generation_prompts import format_prompt
from ftcli.data.templates import render_chat
from ftcli.errors import DataError, UserError
from ftcli.recipe import FewShotExample, GenerateSection

# --- settings -----------------------------------------------------------------------------------------

def settings_with(base: GenerateSection | None = None, **options) -> GenerateSection:
    """`base` (default: the defaults) with every option that is not None applied and validated.
    An empty `stop` list keeps the base's stop strings."""
    base = base or GenerateSection()
    unknown = sorted(set(options) - set(GenerateSection.model_fields))
    if unknown:
        raise TypeError(f"unknown generation option(s): {', '.join(unknown)}")
    updates = {k: v for k, v in options.items() if v is not None and not (k == "stop" and not v)}
    if isinstance(updates.get("stop"), str):
        updates["stop"] = [updates["stop"]]
    from pydantic import ValidationError

    try:
        return GenerateSection.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid generation option: {problems}") from None


def _sampling(settings: GenerateSection) -> bool:
    return settings.temperature > 0


def check_settings(settings: GenerateSection) -> None:
    if settings.num_return_sequences > 1 and not _sampling(settings):
        raise UserError(f"num_return_sequences is {settings.num_return_sequences}, but greedy decoding "
                        "gives one answer per prompt", hint="sample with a temperature > 0 (--temperature 0.8)")
    if settings.template is not None and "{prompt}" not in settings.template:
        raise UserError(f"generate.template {settings.template!r} has no {{prompt}} placeholder",
                        hint="e.g. 'Q: {prompt}\\nA:'")


# --- prompt formatting --------------------------------------------------------------------------------

def read_few_shot_file(path: str | Path) -> list[FewShotExample]:
    """Few-shot examples from a .jsonl file of {"prompt": ..., "response": ...} objects (relative
    paths: the current directory)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"few-shot file not found: {path}", hint="generate.few_shot is a list of "
                        "prompt/response pairs or the path of a .jsonl file of them (relative to the "
                        "current directory)")
    examples = []
    for number, row in iter_jsonl(path):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise DataError(f"{path}, line {number}: a few-shot example needs string fields "
                            "'prompt' and 'response'")
        examples.append(FewShotExample(prompt=row["prompt"], response=row["response"]))
    if not examples:
        raise DataError(f"few-shot file {path} holds no examples")
    return examples


def few_shot_examples(settings: GenerateSection) -> list[FewShotExample]:
    if settings.few_shot is None:
        return []
    if isinstance(settings.few_shot, str):
        return read_few_shot_file(settings.few_shot)
    return list(settings.few_shot)


def tools_of(settings: GenerateSection) -> list[dict] | None:
    """generate.tools as the template takes them: the list, or the list in a .json file (relative
    paths: the current directory)."""
    value = settings.tools
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise UserError(f"tools file not found: {path}", hint="generate.tools is a list of function schemas "
                            "or the path of a .json file holding that list")
        value, where = path.read_text(encoding="utf-8"), f"tools file {path}"
    else:
        where = "generate.tools"
    problem = tools_problem(value)
    if problem:
        raise UserError(f"{where} {problem}")
    return as_tools(value)


def format_generation_prompt(tokenizer, prompt: str, settings: GenerateSection, chat: bool | str,
                             mode: str = "sft", history: Sequence[tuple[str, str]] = (),
                             examples: Sequence[FewShotExample] | None = None) -> str:
    """The exact text the model continues for `prompt`: system prompt, few-shot examples and earlier
    turns (`history`, e.g. of an interactive chat) before it, in the model's format (see the module
    docstring). `examples` saves re-reading a few-shot file per prompt."""
    if examples is None:
        examples = few_shot_examples(settings)
    pairs = [(e.prompt, e.response) for e in examples] + list(history)
    tools = tools_of(settings)
    if chat:
        if not pairs:  # the prompt training rendered before a single-turn reply
            return format_prompt(tokenizer, prompt, settings.system_prompt, chat=chat, tools=tools)
        messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        for user, assistant in pairs:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt})
        return render_chat(tokenizer, messages, chat, add_generation_prompt=True, tools=tools)
    if tools:
        raise UserError("generate.tools are handed to a chat template, and this model is prompted without one",
                        hint="tools go with chat models (a run trained with data.template chat or chatml)")

    def block(text: str) -> str:
        if settings.template is not None:
            return settings.template.replace("{prompt}", text)
        if mode == "sft":  # as preprocess.format_prompt(chat=False) formats training prompts
            return f"{text}\n"
        return text

    def answered(user: str, assistant: str) -> str:
        head = block(user)
        return f"{head}{'' if not head or head[-1].isspace() else ' '}{assistant}\n\n"

    prefix = f"{settings.system_prompt}\n\n" if settings.system_prompt else ""
    # With no examples and no template, an SFT prompt is exactly format_prompt(chat=False)'s.
    return prefix + "".join(answered(u, a) for u, a in pairs) + block(prompt)
