"""Prompts as training wrote them, for asking a tuned model: a single prompt in its chat template
(`format_prompt`), a non-chat template as generate's {prompt} template (`generation_format`), and an eval
row's prompt and the reply it is scored against (`prompt_and_reference`)."""

from __future__ import annotations

from ftcli.data.chat_checks import check_rendered
from ftcli.data.templates import (ALPACA_PROMPT_NO_INPUT, PLACEHOLDER, chat_setting, conversation, placeholders,
                                  render_chat, resolve, response_field, text_prompt)
from ftcli.errors import UserError
from ftcli.recipe import DataSection, GenerateSection


def format_prompt(tokenizer, prompt: str, system_prompt: str | None = None, chat: bool | str = True,
                  tools: list[dict] | None = None) -> str:
    """The text a model sees before its answer to a single-turn prompt: a chat template (True: the
    tokenizer's; a string: that Jinja template) given `tools` as training gave them, or the prompt and
    a newline, as training wrote it."""
    if chat:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        text = render_chat(tokenizer, messages, chat, add_generation_prompt=True, tools=tools)
        check_rendered(text, messages, tools, chat, tokenizer)
        return text
    prefix = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{prefix}{prompt}\n"


def generation_template(kind: str, data: DataSection) -> str | None:
    """A non-chat kind as a generate.template ({prompt} placeholder): the training prompt with the
    user's prompt as its prompt or instruction; other fields are empty. None: plain's default."""
    if kind in ("chat", "chatml", "plain"):
        return None
    if kind == "alpaca":
        return ALPACA_PROMPT_NO_INPUT.replace("{instruction}", "{prompt}")
    slots = dict.fromkeys(("prompt", "instruction", data.prompt_field))
    if not set(slots) & set(placeholders(kind)):
        raise UserError(f"data.template {kind!r} has no placeholder for the prompt to generate from "
                        f"({' or '.join('{' + s + '}' for s in slots)})",
                        hint="set generate.template to the prompt format, with a {prompt} placeholder")
    return PLACEHOLDER.sub(lambda m: "{prompt}" if m.group(1) in slots else "", kind)


def generation_format(tokenizer, data: DataSection, settings: GenerateSection) -> tuple[GenerateSection, bool | str]:
    """Settings and `chat` value that make generation ask an SFT run's model in exactly its training
    format. A generate.template the recipe sets itself is kept: the user asked for that format."""
    kind = resolve(tokenizer, data.template)
    chat = chat_setting(kind)
    if not chat and settings.template is None and kind != "plain":
        settings = settings.model_copy(update={"template": generation_template(kind, data)})
    return settings, chat


def prompt_and_reference(row: dict, recipe, format: str, tokenizer) -> tuple[str, str]:
    """The exact prompt text training put before the reply this row teaches (the last assistant
    turn of a chat), and that reply: what eval generation asks, and the answer it is scored against."""
    d, system = recipe.data, recipe.generate.system_prompt
    kind = resolve(tokenizer, d.template)
    chat = chat_setting(kind)
    if not chat:
        return text_prompt(kind, row, d, format, system), str(row[response_field(d, format)])
    conv = conversation(row, d, format, system)
    messages = conv.messages
    last = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
    prompt = render_chat(tokenizer, messages[:last], chat, add_generation_prompt=True, tools=conv.tools)
    if not messages[last].get("tool_calls"):
        return prompt, messages[last]["content"]
    # A reply that calls tools is its text and calls as the template writes them, less the special
    # tokens that generation's decoding leaves out too.
    full = render_chat(tokenizer, messages[:last + 1], chat, add_generation_prompt=False, tools=conv.tools)
    reply = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return prompt, tokenizer.decode(reply, skip_special_tokens=True).strip()
