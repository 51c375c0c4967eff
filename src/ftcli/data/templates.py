"""SFT prompt templates (`data.template`): which one a run uses, and the text each writes for a row.

A template resolves to a *kind*: "chat" (the tokenizer's chat template), "chatml" (the built-in
ChatML template, usable with any tokenizer), "alpaca" (the Stanford Alpaca prompt), "plain" (the
prompt and a newline), or a custom string whose {field} placeholders are filled from the row.

Chat templates are passed around as one value, `chat`: False (no chat template), True (the
tokenizer's own) or a Jinja template string (ChatML), the form `apply_chat_template` takes.

Rows come in five SFT formats (`Splits.format`): prompt_response (data.prompt_field and
data.response_field), alpaca (instruction, optional input, output), prompt_completion (TRL's prompt and
completion: strings like prompt_response, or lists of turns rendered as a chat), and the chats
messages (data.messages_field: a list of {role, content} turns) and sharegpt (`chats`). Tokenization
and masking live in `tokenize`.
"""

from __future__ import annotations

import re

from ftcli.data import chats
from ftcli.data.chat_checks import check_calls_rendered, check_rendered
from ftcli.data.row_formats import columns_of
from ftcli.errors import DataError, ModelError
from ftcli.recipe import DataSection

# ChatML, as Qwen and SmolLM2 write it: <|im_start|>role\ncontent<|im_end|>\n per turn. Tools (Hermes'
# convention, which Qwen's templates follow too): the schemas in the system turn, one JSON per line in
# <tools>; each call after the reply's text as {"name", "arguments"} JSON in <tool_call> tags; a tool's
# result as a `tool` turn. A chat without tools renders exactly as plain ChatML.
CHATML_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\n' }}"
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
    "{{ '# Tools\n\nYou may call one or more of these functions:\n<tools>\n' }}"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\n' }}{% endfor %}"
    "{{ '</tools>\n\nFor each call, reply with {\"name\": <function name>, \"arguments\": <arguments JSON>} "
    "inside <tool_call></tool_call> tags.<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}{% if not (tools and loop.first and message['role'] == 'system') %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% for call in message['tool_calls'] or [] %}{% if message['content'] or not loop.first %}{{ '\n' }}{% endif %}"
    "{{ '<tool_call>\n' }}{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "{{ '\n</tool_call>' }}{% endfor %}{{ '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The Stanford Alpaca prompts (tatsu-lab/stanford_alpaca), with alpaca-lora's newline after "### Response:"
# so the response starts on a line of its own.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# {name} with a field-like name; any other brace (e.g. JSON in the template) is literal text.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.-]*)\}")


# --- which template ---------------------------------------------------------------------------------

def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat_template(tokenizer, template: str) -> bool:
    """Whether prompts go through the tokenizer's own chat template: `data.template` auto (when there
    is one) or chat (required: an error without one). See `resolve` for the other kinds."""
    return resolve(tokenizer, template) == "chat"


def resolve(tokenizer, template: str) -> str:
    """The kind of `data.template`: auto becomes chat when the tokenizer has a chat template, plain
    otherwise; a custom string is returned as it is."""
    own = has_chat_template(tokenizer)
    if template == "chat" and not own:
        raise ModelError(f"data.template is 'chat' but the tokenizer of {tokenizer.name_or_path} has no chat template",
                         hint="use a chat model, or set data.template: plain (or auto) for plain prompts, "
                              "or chatml for the built-in ChatML chat format")
    if template == "auto":
        return "chat" if own else "plain"
    return template


def chat_setting(kind: str) -> bool | str:
    """The `chat` value for a kind: True for the tokenizer's template, ChatML's Jinja, or False."""
    return {"chat": True, "chatml": CHATML_TEMPLATE}.get(kind, False)


def render_chat(tokenizer, messages: list[dict], chat: bool | str, add_generation_prompt: bool,
                tools: list[dict] | None = None) -> str:
    from jinja2.exceptions import TemplateError

    try:
        # chat_template=None makes transformers use the tokenizer's own template.
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             chat_template=chat if isinstance(chat, str) else None, tools=tools)
    except TemplateError as exc:  # the template's own raise_exception: a chat it refuses, not a bug
        roles = ", ".join(m["role"] for m in messages)
        raise DataError(f"the chat template refuses a chat with turns {roles}: {exc}",
                        hint="give chats the turn order this model's template expects (often user and "
                             "assistant alternating, after an optional system turn)") from None


def placeholders(template: str) -> list[str]:
    return list(dict.fromkeys(PLACEHOLDER.findall(template)))


def fill(template: str, values: dict) -> str:
    """`template` with each {name} replaced by values[name] ("" when absent or null)."""
    def value(match: re.Match) -> str:
        found = values.get(match.group(1))
        if isinstance(found, (list, dict)):  # str() would write a Python repr into the prompt
            raise DataError(f"data.template's {{{match.group(1)}}} is a {type(found).__name__} in a row, not text",
                            hint="point the placeholder at a text field")
        return "" if found is None else str(found)

    return PLACEHOLDER.sub(value, template)


def check_template(kind: str, data: DataSection, format: str, fields: list[str], source: str = "data",
                   conversational: bool | None = None) -> None:
    """Fail before tokenizing when the template cannot render these rows: chats without a chat
    template, or a custom placeholder that names no field of the data (`fields`). `conversational`:
    whether some row is a chat (`chats.is_conversational`); None: whether the format always is."""
    if conversational is None:
        conversational = format in chats.CHAT_FORMATS
    if conversational and not chat_setting(kind):
        what = {"sharegpt": "sharegpt conversations", "sharegpt_preference": "sharegpt preference pairs",
                "preference": "preference pairs of chats", "unpaired": "unpaired (KTO) rows of chats",
                "prompt_completion": "conversational prompt/completion rows"}.get(format, "messages")
        raise DataError(f"{source}: {what} need a chat template: set data.template to chat or chatml "
                        f"(it is {data.template!r})")
    if kind in ("chat", "chatml", "alpaca", "plain"):
        return
    names = placeholders(kind)
    if not names:
        raise DataError(f"data.template {kind!r} has no {{field}} placeholder, so no row text would reach the "
                        "prompt", hint="name a field of the data in braces, e.g. '### Q: {prompt}\\n### A: '")
    missing = [n for n in names if n not in fields]
    if missing:
        raise DataError(f"{source}: data.template names field(s) {', '.join(missing)} that the data lacks; "
                        f"the data has: {', '.join(fields) or '(none)'}",
                        hint="placeholders are the data's own field names, in braces")
    answer = response_field(data, format)
    if answer in names:
        raise DataError(f"data.template puts {{{answer}}}, the response, in the prompt",
                        hint="leave it out: the response follows the rendered template by itself")


def check_rows(tokenizer, data: DataSection, format: str, rows: list[dict], source: str = "data") -> str:
    """The kind of data.template for these rows, once checked that it can render them: the one check
    `tokenize_sft` and `ftcli validate` both run, so validate passes exactly what finetune accepts."""
    kind = resolve(tokenizer, data.template)
    if rows:  # checked once for all rows, so a bad template fails with one message
        check_template(kind, data, format, columns_of(rows), source,
                       conversational=any(chats.is_conversational(r, format) for r in rows))
        _check_tool_rendering(tokenizer, data, format, rows, kind, source)
    return kind


def _check_tool_rendering(tokenizer, data: DataSection, format: str, rows: list[dict], kind: str,
                          source: str) -> None:
    """Render the first chat with tools and the first with tool calls or results, so a template that
    cannot write them fails here (and in `ftcli validate`) with one message, before any tokenizing."""
    chat = chat_setting(kind)
    if not chat:
        return
    conversations = (conversation(r, data, format, None) for r in rows if chats.is_conversational(r, format))
    wanted = {"tools": lambda c: c.tools,
              "tool calls": lambda c: any(m.get("tool_calls") or m["role"] == "tool" for m in c.messages)}
    for conv in conversations:
        for what in [w for w, has in wanted.items() if has(conv)]:
            del wanted[what]
            try:
                chat_segments(tokenizer, conv, chat, last_only=False)
            except DataError as exc:
                raise DataError(f"{source}: {exc.message}", hint=exc.hint) from None
        if not wanted:
            return


def describe(kind: str, template: str) -> str:
    """How prompts are written, in words (`ftcli validate` and finetune's log say the same)."""
    text = {"chat": "the tokenizer's chat template", "chatml": "ChatML (built in)",
            "alpaca": "the Alpaca prompt", "plain": "plain (prompt, newline, response)"}.get(kind, f"{kind!r}")
    if template == "auto":
        text += " (data.template auto: the tokenizer has " + ("a chat template)" if kind == "chat" else
                                                               "no chat template)")
    return text


# --- the parts of a row -----------------------------------------------------------------------------

def response_field(data: DataSection, format: str) -> str:
    return {"alpaca": "output", "prompt_completion": "completion", "unpaired": "completion"}.get(
        format, data.response_field)


def _prompt_field(data: DataSection, format: str) -> str:
    return "prompt" if format == "prompt_completion" else data.prompt_field


def user_text(row: dict, data: DataSection, format: str) -> str:
    """What the user says in a single-turn row (alpaca: the instruction, then its input if any)."""
    if format == "alpaca":
        extra = str(row.get("input") or "")
        return str(row["instruction"]) + (f"\n\n{extra}" if extra else "")
    return str(row[_prompt_field(data, format)])


def conversation(row: dict, data: DataSection, format: str, system_prompt: str | None) -> chats.Chat:
    """The row as a chat: messages, answer included, the index of the first turn a reply is learned
    from (a conversational prompt's own assistant turns are context), and its tools. `system_prompt`
    (generate.system_prompt) opens it unless the row has its own system message, as generation will ask."""
    if chats.is_conversational(row, format):
        chat = chats.chat_of(row, format, data.messages_field, data.roles, data.tools_field)
    else:
        chat = chats.Chat([{"role": "user", "content": user_text(row, data, format)},
                           {"role": "assistant", "content": str(row[response_field(data, format)])}], 0)
    if system_prompt and chat.messages[0]["role"] != "system":
        return chats.Chat([{"role": "system", "content": system_prompt}, *chat.messages], chat.first + 1, chat.tools)
    return chat


def text_prompt(kind: str, row: dict, data: DataSection, format: str, system_prompt: str | None) -> str:
    """The prompt of a non-chat template for a single-turn row (the response follows it)."""
    prefix = f"{system_prompt}\n\n" if system_prompt else ""  # as prompting writes it for generation
    if kind == "plain":
        return prefix + user_text(row, data, format) + "\n"
    if kind == "alpaca":
        if format == "alpaca":
            instruction, extra = str(row["instruction"]), str(row.get("input") or "")
        else:
            instruction, extra = str(row[_prompt_field(data, format)]), ""
        if extra:
            return prefix + fill(ALPACA_PROMPT, {"instruction": instruction, "input": extra})
        return prefix + fill(ALPACA_PROMPT_NO_INPUT, {"instruction": instruction})
    return prefix + fill(kind, row)


def chat_segments(tokenizer, conv: chats.Chat, chat: bool | str, last_only: bool) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, learn) pieces: each learned assistant reply (from turn
    `conv.first` on) with its tool calls and end-of-turn markup is learn=True, everything before it
    (other turns, tool results, the markup that opens the reply) learn=False. Turns after the last
    learned reply teach nothing and are left out.

    Each prefix is rendered on its own (messages[:k] with the generation prompt, then messages[:k+1]),
    which works for any template as long as a longer chat's text starts with a shorter one's."""
    messages, tools = conv.messages, conv.tools
    targets = [k for k, m in enumerate(messages) if m["role"] == "assistant" and k >= conv.first]
    if not targets:
        raise DataError("a chat has no assistant turn to learn from")
    if last_only:
        targets = targets[-1:]
    pieces, done = [], ""
    for k in targets:
        head = render_chat(tokenizer, messages[:k], chat, add_generation_prompt=True, tools=tools)
        full = render_chat(tokenizer, messages[:k + 1], chat, add_generation_prompt=False, tools=tools)
        last = k == targets[-1]
        if not head.startswith(done) or not (full.startswith(head) or last):
            raise DataError("the chat template renders earlier turns differently once later turns follow, "
                            "so the turns cannot be masked one by one",
                            hint="set data.assistant_turns: last (learn only the final reply)")
        if full.startswith(head):
            reply = full[len(head):]
        elif messages[k].get("tool_calls"):
            raise DataError("the chat template writes a final reply that calls tools differently from what "
                            "follows its generation prompt, so the call cannot be learned as it will be asked")
        else:
            # The template writes a finished reply differently from what follows its generation
            # prompt (e.g. a reasoning tag): learn the reply and EOS after the prompt generation sends.
            reply = messages[k]["content"] + (tokenizer.eos_token or "")
        pieces += [(head[len(done):], False), (reply, True)]
        done = full
    check_rendered(done, messages[:targets[-1] + 1], tools, chat, tokenizer)
    for k, (reply, _) in zip(targets, pieces[1::2]):
        check_calls_rendered(reply, messages[k], chat, tokenizer)
    return pieces
