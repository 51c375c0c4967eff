"""Checks on a chat as a template rendered it: a template that drops a system message, a tool result,
the tools it was given or a reply's tool calls would train silently wrong, so such a chat is refused
with the fix (`data.template: chatml`, whose ChatML writes all of them)."""

from __future__ import annotations

from ftcli.errors import DataError


def _template_name(chat: bool | str, tokenizer) -> str:
    return "ChatML (data.template: chatml)" if isinstance(chat, str) else f"the chat template of {tokenizer.name_or_path}"


_TOOLS_HINT = ("use a model whose chat template supports tools, or set data.template: chatml (ftcli's ChatML "
               "writes tools in the system turn and calls in <tool_call> tags)")


def check_rendered(text: str, messages: list[dict], tools: list[dict] | None, chat: bool | str, tokenizer) -> None:
    """Refuse a chat the template renders without some of its parts, which would train silently
    wrong: a system message or a tool result it leaves out, tools it does not write."""
    missing = [t["function"]["name"] for t in tools or () if t["function"]["name"] not in text]
    if missing:
        raise DataError(f"{_template_name(chat, tokenizer)} does not write the tools it is given "
                        f"({', '.join(missing)} not in the rendered chat)", hint=_TOOLS_HINT)
    for i, message in enumerate(messages, start=1):
        content = message["content"].strip()
        if message["role"] in ("system", "tool") and content and content not in text:
            raise DataError(f"{_template_name(chat, tokenizer)} leaves out turn {i} ({message['role']}): its "
                            "text is not in the rendered chat",
                            hint=_TOOLS_HINT if message["role"] == "tool" else
                            "use a model whose chat template keeps system messages, or data.template: chatml")


def check_calls_rendered(reply: str, message: dict, chat: bool | str, tokenizer) -> None:
    missing = [c["function"]["name"] for c in message.get("tool_calls", ()) if c["function"]["name"] not in reply]
    if missing:
        raise DataError(f"{_template_name(chat, tokenizer)} does not write tool calls: the reply's call to "
                        f"{', '.join(missing)} is not in its rendered text", hint=_TOOLS_HINT)
