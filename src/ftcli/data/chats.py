"""Chat rows: the turns of a row in each format ftcli reads as a chat, as the messages chat templates
take, the tool schemas that go with them, and what makes a chat unusable.

Three formats hold chats: `messages` (data.messages_field: OpenAI-style turns), `sharegpt`
(`conversations`: {from, value} turns, speakers mapped by data.roles, optional `system` and tools
columns) and the conversational form of TRL's `prompt_completion` (`prompt` and `completion` both
lists of OpenAI-style turns; only the completion's assistant turns are learned).

Messages are what `apply_chat_template` takes: {role, content} with role system, user, assistant or
tool; an assistant turn may carry `tool_calls` ([{type: function, function: {name, arguments}}],
arguments a mapping: OpenAI's JSON-string arguments are parsed) and then may have no content; a tool
turn answers the calls before it. ShareGPT writes a call as a `function_call` turn whose value is the
call's JSON ({name, arguments}, or a list of them) and its result as an `observation` turn. Tools (the
row's data.tools_field: a list of function schemas, or its JSON string) go to the template as `tools=`,
each as {type: function, function: schema}.

`row_formats` checks rows with `chat_problem` while cleaning (so errors name the file, row and turn);
`templates` renders the `chat_of` a checked row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SHAREGPT_FIELD = "conversations"
PROMPT_COMPLETION = ("prompt", "completion")  # TRL's names
CHAT_FORMATS = ("messages", "sharegpt")
CHAT_ROLES = ("system", "user", "assistant", "tool")
TOOL_CALL = "tool_call"  # data.roles: a speaker whose turns are the assistant's tool calls (function_call)


@dataclass(frozen=True)
class Chat:
    messages: list[dict]
    first: int  # the first turn learned from (a conversational prompt's own assistant turns are context)
    tools: list[dict] | None = None  # function schemas for the template's `tools=`


def is_conversational(row: dict, format: str) -> bool:
    """Whether a row of `format` is rendered as a chat (prompt_completion: when its prompt is turns)."""
    if format == "prompt_completion":
        return isinstance(row.get("prompt"), list)
    return format in CHAT_FORMATS


def chat_of(row: dict, format: str, messages_field: str, roles: dict[str, str], tools_field: str) -> Chat:
    """A checked chat row as messages and tools."""
    tools = as_tools(row.get(tools_field))
    if format == "sharegpt":
        system = row.get("system")
        head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        return Chat(head + [sharegpt_message(t, roles) for t in row[SHAREGPT_FIELD]], 0, tools)
    if format == "prompt_completion":
        prompt, completion = ([message(t) for t in row[f]] for f in PROMPT_COMPLETION)
        return Chat(prompt + completion, len(prompt), tools)
    return Chat([message(t) for t in row[messages_field]], 0, tools)


# --- turns as messages --------------------------------------------------------------------------------

def message(turn: dict) -> dict:
    """An OpenAI-style turn as a template message: only the keys templates read, tool calls in the
    {type, function: {name, arguments: mapping}} form, no content as "" (templates add strings)."""
    message = {"role": turn["role"], "content": turn.get("content") or ""}
    if turn.get("tool_calls"):
        message["tool_calls"] = [_call(c) for c in turn["tool_calls"]]
    for key in ("tool_call_id", "name"):
        if isinstance(turn.get(key), str):
            message[key] = turn[key]
    return message


def _call(call: dict) -> dict:
    function = call.get("function", call)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        arguments = json.loads(arguments) if arguments.strip() else {}
    out = {"type": "function", "function": {"name": function["name"], "arguments": arguments or {}}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def sharegpt_message(turn: dict, roles: dict[str, str]) -> dict:
    role = roles[turn["from"]]
    if role == TOOL_CALL:
        calls = json.loads(turn["value"])
        return {"role": "assistant", "content": "",
                "tool_calls": [_call(c) for c in (calls if isinstance(calls, list) else [calls])]}
    return {"role": role, "content": turn["value"]}


def as_tools(value) -> list[dict] | None:
    if value in (None, "", []):
        return None
    schemas = json.loads(value) if isinstance(value, str) else value
    if isinstance(schemas, dict):
        schemas = [schemas]
    return [s if "function" in s else {"type": "function", "function": s} for s in schemas] or None


def tools_problem(value) -> str | None:
    """What is wrong with a tools value (a list of function schemas, or its JSON), or None."""
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return f"is not JSON ({exc.msg} at character {exc.pos})"
    schemas = [value] if isinstance(value, dict) else value
    if not isinstance(schemas, list):
        return f"is a {type(value).__name__}, not a list of function schemas"
    for i, schema in enumerate(schemas, start=1):
        function = schema.get("function", schema) if isinstance(schema, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            return f"tool {i} has no string 'name' (a function schema is {{name, description, parameters}})"
    return None


# --- what makes a chat unusable -------------------------------------------------------------------------

def chat_problem(row: dict, format: str, messages_field: str, roles: dict[str, str],
                 tools_field: str = "tools") -> tuple[str, str] | None:
    """What makes a chat row unusable, as (field, problem), or None when it can be rendered."""
    problem = tools_problem(row.get(tools_field))
    if problem:
        return tools_field, problem
    if format == "sharegpt":
        found = _sharegpt_problem(row, roles)
        if found:
            return found
    elif format == "prompt_completion":
        for field in PROMPT_COMPLETION:
            problem = turns_problem(row[field], order=False)  # checked across both below
            if problem:
                return field, problem
        if not any(t["role"] == "assistant" for t in row["completion"]):
            return "completion", "has no assistant turn to learn from"
    else:
        problem = turns_problem(row[messages_field])
        if problem:
            return messages_field, problem
    field = {"sharegpt": SHAREGPT_FIELD, "prompt_completion": "prompt"}.get(format, messages_field)
    messages = chat_of(row, format, messages_field, roles, tools_field).messages
    if format == "prompt_completion":  # a tool result must follow its call across prompt and completion
        problem = _order_problem(messages)
        if problem:
            return field, problem
    if not any(m["role"] == "assistant" for m in messages):
        return field, "has no assistant turn to learn from"
    if messages[0]["role"] == "assistant":
        # A chat template renders a reply after the turns before it; before the first there are none.
        return field, "opens with an assistant turn: a chat starts with a user (or system) turn"
    return None


def turns_problem(turns, order: bool = True) -> str | None:
    """OpenAI-style turns: a role each, text content (optional on an assistant turn that calls
    tools), well-formed tool calls, and every tool result after a call."""
    if not isinstance(turns, list):
        return f"is a {type(turns).__name__}, not a list of turns"
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            return f"turn {i} is a {type(turn).__name__}, not a {{role, content}} mapping"
        role = turn.get("role")
        if not isinstance(role, str):
            return f"turn {i} has no string 'role'"
        if role not in CHAT_ROLES:
            return f"turn {i} has role '{role}', not one of {', '.join(CHAT_ROLES)}"
        calls = turn.get("tool_calls")
        if calls not in (None, []):
            if role != "assistant":
                return f"turn {i} ({role}) has tool_calls: only assistant turns call tools"
            problem = _calls_problem(calls)
            if problem:
                return f"turn {i}: {problem}"
        content = turn.get("content")
        if not isinstance(content, str) and not (calls and content is None):
            return f"turn {i} has no string 'content'"
    return _order_problem([message(t) for t in turns]) if order else None


def _order_problem(messages: list[dict]) -> str | None:
    """A tool result needs a call before it: the turns before it, back to an assistant turn, are tool
    results, and that assistant turn made calls (one with this tool_call_id, when both have ids)."""
    calls = None  # the ids of the open calls; None when no call is open
    for i, message in enumerate(messages, start=1):
        if message["role"] == "assistant":
            calls = [c.get("id") for c in message.get("tool_calls", [])] or None
        elif message["role"] == "tool":
            if calls is None:
                return f"turn {i} is a tool result with no tool call before it"
            answered = message.get("tool_call_id")
            if answered and all(calls) and answered not in calls:
                return f"turn {i} answers tool call '{answered}', which the call before it did not make"
        else:
            calls = None
    return None


def _calls_problem(calls) -> str | None:
    if not isinstance(calls, list):
        return f"tool_calls is a {type(calls).__name__}, not a list of calls"
    for j, call in enumerate(calls, start=1):
        problem = call_problem(call)
        if problem:
            return f"tool call {j} {problem}"
    return None


def call_problem(call) -> str | None:
    """A tool call: {name, arguments} or {type, id, function: {name, arguments}}, arguments a mapping
    or its JSON."""
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return "is not a {name, arguments} mapping"
    if not isinstance(function.get("name"), str) or not function["name"]:
        return "has no string 'name'"
    arguments = function.get("arguments")
    if isinstance(arguments, str) and arguments.strip():
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return f"has arguments that are not JSON ({exc.msg})"
    if arguments not in (None, "") and not isinstance(arguments, dict):
        return f"has arguments that are a {type(arguments).__name__}, not a mapping of names to values"
    return None


def sharegpt_turns_problem(turns, roles: dict[str, str]) -> str | None:
    """ShareGPT turns: {from, value} strings, each speaker mapped, each tool call's value its JSON."""
    if not isinstance(turns, list):
        return f"is a {type(turns).__name__}, not a list of turns"
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            return f"turn {i} is a {type(turn).__name__}, not a {{from, value}} mapping"
        for key in ("from", "value"):
            if not isinstance(turn.get(key), str):
                return f"turn {i} has no string '{key}'"
        speaker = turn["from"]
        if speaker not in roles:
            return f"turn {i} is from '{speaker}', which data.roles does not map (it maps {', '.join(roles)})"
        if roles[speaker] == TOOL_CALL:
            problem = _sharegpt_call_problem(turn["value"])
            if problem:
                return f"turn {i} (from: {speaker}) {problem}"
    return None


def _sharegpt_problem(row: dict, roles: dict[str, str]) -> tuple[str, str] | None:
    turns = row[SHAREGPT_FIELD]
    problem = sharegpt_turns_problem(turns, roles) or _order_problem([sharegpt_message(t, roles) for t in turns])
    if problem:
        return SHAREGPT_FIELD, problem
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        return "system", f"is a {type(system).__name__}, not text"
    if isinstance(system, str) and system.strip() and turns and roles[turns[0]["from"]] == "system":
        return "system", "is set and the conversation opens with a system turn too: keep one of them"
    return None


def _sharegpt_call_problem(value: str) -> str | None:
    try:
        calls = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"is not a tool call's JSON ({exc.msg}): a call is {{\"name\": ..., \"arguments\": {{...}}}}"
    if calls == []:
        return "holds no call"
    for j, call in enumerate(calls if isinstance(calls, list) else [calls], start=1):
        problem = call_problem(call)
        if problem:
            return f"call {j} {problem}"
    return None
