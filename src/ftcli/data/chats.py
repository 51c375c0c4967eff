"""Chat rows: the turns of a row in each format ftcli reads as a chat, as {role, content} messages,
and what makes a chat unusable.

Three formats hold chats: `messages` (data.messages_field: {role, content} turns), `sharegpt`
(`conversations`: {from, value} turns, roles mapped by data.roles, an optional `system` column) and
the conversational form of TRL's `prompt_completion` (`prompt` and `completion` both lists of
{role, content} turns; only the completion's assistant turns are learned). `row_formats` checks rows
with `chat_problem` while cleaning (so errors name the file and row); `templates` renders the
`messages_of` a checked row.
"""

from __future__ import annotations

SHAREGPT_FIELD = "conversations"
PROMPT_COMPLETION = ("prompt", "completion")  # TRL's names
# ShareGPT's tool-call turns (LLaMA-Factory's spelling): not rendered yet, so refused rather than
# trained as plain text the model would then emit instead of a call.
TOOL_ROLES = ("function_call", "observation")
CHAT_FORMATS = ("messages", "sharegpt")


def is_conversational(row: dict, format: str) -> bool:
    """Whether a row of `format` is rendered as a chat (prompt_completion: when its prompt is turns)."""
    if format == "prompt_completion":
        return isinstance(row.get("prompt"), list)
    return format in CHAT_FORMATS


def messages_of(row: dict, format: str, messages_field: str, roles: dict[str, str]) -> tuple[list[dict], int]:
    """A chat row's messages, and the index of the first turn it learns from (the completion's first
    turn in prompt_completion: the prompt's own assistant turns are context)."""
    if format == "sharegpt":
        system = row.get("system")
        head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        return head + [{"role": roles[t["from"]], "content": t["value"]} for t in row[SHAREGPT_FIELD]], 0
    if format == "prompt_completion":
        prompt, completion = (_plain(row[f]) for f in PROMPT_COMPLETION)
        return prompt + completion, len(prompt)
    return _plain(row[messages_field]), 0


def _plain(turns: list[dict]) -> list[dict]:
    return [{"role": str(t["role"]), "content": str(t["content"])} for t in turns]


def chat_problem(row: dict, format: str, messages_field: str, roles: dict[str, str]) -> tuple[str, str] | None:
    """What makes a chat row unusable, as (field, problem), or None when it can be rendered."""
    if format == "sharegpt":
        found = _sharegpt_problem(row, roles)
        if found:
            return found
    elif format == "prompt_completion":
        for field in PROMPT_COMPLETION:
            problem = _turns_problem(row[field], "role", "content")
            if problem:
                return field, problem
        if not any(t["role"] == "assistant" for t in row["completion"]):
            return "completion", "has no assistant turn to learn from"
    else:
        problem = _turns_problem(row[messages_field], "role", "content")
        if problem:
            return messages_field, problem
    field = {"sharegpt": SHAREGPT_FIELD, "prompt_completion": "prompt"}.get(format, messages_field)
    messages, _ = messages_of(row, format, messages_field, roles)
    if not any(m["role"] == "assistant" for m in messages):
        return field, "has no assistant turn to learn from"
    if messages[0]["role"] == "assistant":
        # A chat template renders a reply after the turns before it; before the first there are none.
        return field, "opens with an assistant turn: a chat starts with a user (or system) turn"
    return None


def _turns_problem(turns, role: str, content: str) -> str | None:
    if not isinstance(turns, list):
        return f"is a {type(turns).__name__}, not a list of turns"
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            return f"turn {i} is a {type(turn).__name__}, not a {{{role}, {content}}} mapping"
        for key in (role, content):
            if not isinstance(turn.get(key), str):
                return f"turn {i} has no string '{key}'"
    return None


def _sharegpt_problem(row: dict, roles: dict[str, str]) -> tuple[str, str] | None:
    if row.get("tools") not in (None, "", [], "[]"):
        return "tools", "holds tool schemas: tool calls are not supported yet"
    turns = row[SHAREGPT_FIELD]
    problem = _turns_problem(turns, "from", "value")
    if problem:
        return SHAREGPT_FIELD, problem
    for i, turn in enumerate(turns, start=1):
        speaker = turn["from"]
        if speaker in roles:
            continue
        if speaker in TOOL_ROLES:
            return SHAREGPT_FIELD, f"turn {i} is a tool turn (from: {speaker}): tool calls are not supported yet"
        return SHAREGPT_FIELD, (f"turn {i} is from '{speaker}', which data.roles does not map "
                                f"(it maps {', '.join(roles)})")
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        return "system", f"is a {type(system).__name__}, not text"
    if isinstance(system, str) and system.strip() and turns and roles[turns[0]["from"]] == "system":
        return "system", "is set and the conversation opens with a system turn too: keep one of them"
    return None
