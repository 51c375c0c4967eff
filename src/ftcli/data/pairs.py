"""Preference pairs: a prompt with a chosen and a rejected reply, read from each form preference data
comes in, and what makes a pair unusable.

Two row formats hold pairs (`row_formats`):
- `preference`, TRL's forms: standard (`prompt`, `chosen`, `rejected` strings), conversational (lists of
  {role, content} turns; tools from data.tools_field as for chats) and implicit-prompt (no `prompt`:
  `chosen` and `rejected` are whole chats, and the turns they share are the prompt);
- `sharegpt_preference`, LLaMA-Factory's: `conversations` ({from, value} turns, the prompt), and `chosen`
  and `rejected` each a {from, value} turn (or a list of them), speakers mapped by data.roles.

Field names are data.chosen_field and data.rejected_field. A pair is rendered with the same chat
template and masking as SFT (`tokenize_pairs`): its prompt is what generation would be asked, each
reply what the model would answer.

A third, `unpaired`, is KTO's: one reply per row (`prompt`, `completion`, both strings or both lists of
turns) with a boolean `label`: true for a reply to learn from, false for one to move away from.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.data import chats
from ftcli.recipe import DataSection

PAIR_FORMATS = ("preference", "sharegpt_preference")
UNPAIRED = "unpaired"
UNPAIRED_FIELDS = ("prompt", "completion", "label")
PREFERENCE_FORMATS = PAIR_FORMATS + (UNPAIRED,)


@dataclass(frozen=True)
class Pair:
    prompt: list[dict] | str  # messages, or (standard form) the user's text
    chosen: list[dict] | str
    rejected: list[dict] | str
    tools: list[dict] | None = None

    @property
    def conversational(self) -> bool:
        return isinstance(self.chosen, list)


@dataclass(frozen=True)
class Completion:
    """An unpaired row: one reply to a prompt, marked desirable or not."""
    prompt: list[dict] | str
    completion: list[dict] | str
    desirable: bool
    tools: list[dict] | None = None

    @property
    def conversational(self) -> bool:
        return isinstance(self.completion, list)


def _turns(value) -> list:
    return [value] if isinstance(value, dict) else value


def pair_of(row: dict, format: str, data: DataSection) -> Pair:
    """A checked row as a pair."""
    chosen, rejected = _turns(row[data.chosen_field]), _turns(row[data.rejected_field])
    tools = chats.as_tools(row.get(data.tools_field))
    if format == "sharegpt_preference":
        def messages(turns):
            return [chats.sharegpt_message(t, data.roles) for t in turns]

        system = row.get("system")
        head = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        return Pair(head + messages(row[chats.SHAREGPT_FIELD]), messages(chosen), messages(rejected), tools)
    if isinstance(chosen, str):
        return Pair(str(row["prompt"]), chosen, rejected)
    chosen, rejected = [chats.message(t) for t in chosen], [chats.message(t) for t in rejected]
    if row.get("prompt") is not None:
        return Pair([chats.message(t) for t in row["prompt"]], chosen, rejected, tools)
    shared = _shared_prefix(chosen, rejected)
    return Pair(chosen[:shared], chosen[shared:], rejected[shared:], tools)


def _shared_prefix(chosen: list[dict], rejected: list[dict]) -> int:
    """How many opening turns two whole chats share."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return n


def completion_of(row: dict, data: DataSection) -> Completion:
    """A checked unpaired row."""
    prompt, completion = row["prompt"], row["completion"]
    tools = chats.as_tools(row.get(data.tools_field))
    if isinstance(completion, str):
        return Completion(str(prompt), completion, row["label"])
    return Completion([chats.message(t) for t in prompt], [chats.message(t) for t in completion], row["label"], tools)


def preference_problem(row: dict, format: str, data: DataSection) -> tuple[str, str] | None:
    """What makes a preference row (a pair, or an unpaired reply) unusable, as (field, problem), or None."""
    return unpaired_problem(row, data) if format == UNPAIRED else pair_problem(row, format, data)


def unpaired_problem(row: dict, data: DataSection) -> tuple[str, str] | None:
    problem = chats.tools_problem(row.get(data.tools_field))
    if problem:
        return data.tools_field, problem
    if not isinstance(row["label"], bool):
        return "label", (f"is {row['label']!r}: KTO's label is true (a reply to learn from) or false (one to "
                         "move away from)")
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(completion, str):
        return None if isinstance(prompt, str) else \
            ("prompt", f"is a {type(prompt).__name__} while completion is a string: give both as strings or both "
                       "as lists of turns")
    if not isinstance(completion, list):
        return "completion", f"is a {type(completion).__name__}: give a string or a list of turns"
    if not isinstance(prompt, list):
        return "prompt", (f"is a {type(prompt).__name__} while completion is a list of turns: give both as strings "
                          "or both as lists of turns")
    for name, turns in (("prompt", prompt), ("completion", completion)):
        problem = chats.turns_problem(turns, order=name == "prompt")
        if problem:
            return name, problem
    if prompt[-1].get("role") == "assistant":
        return "prompt", "ends with an assistant turn: the completion is the assistant's next turn"
    if not any(t.get("role") == "assistant" for t in completion):
        return "completion", "has no assistant turn: a completion is the assistant's reply"
    return None


def identical(pair: Pair) -> bool:
    return pair.chosen == pair.rejected


def pair_problem(row: dict, format: str, data: DataSection) -> tuple[str, str] | None:
    """What makes a preference row unusable, as (field, problem), or None."""
    problem = chats.tools_problem(row.get(data.tools_field))
    if problem:
        return data.tools_field, problem
    names = (data.chosen_field, data.rejected_field)
    if format == "sharegpt_preference":
        return _sharegpt_problem(row, data, names)
    values = [row[n] for n in names]
    prompt = row.get("prompt")
    if all(isinstance(v, str) for v in values):
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt", ("is missing: string replies need the prompt they answer (or give chosen and "
                              "rejected as whole chats, whose shared turns are the prompt)")
        return None
    for name, value in zip(names, values):
        if not isinstance(value, list):
            return name, (f"is a {type(value).__name__} while {names[1 - names.index(name)]} is not: give both "
                          "as strings or both as lists of turns")
        problem = chats.turns_problem(value, order=False)
        if problem:
            return name, problem
    if prompt is not None:
        if not isinstance(prompt, list):
            return "prompt", f"is a {type(prompt).__name__}: with replies as turns, the prompt is turns too"
        problem = chats.turns_problem(prompt)
        if problem:
            return "prompt", problem
    return _pair_shape_problem(pair_of(row, format, data), names, implicit=prompt is None)


def _sharegpt_problem(row: dict, data: DataSection, names: tuple[str, str]) -> tuple[str, str] | None:
    found = chats.chat_problem({chats.SHAREGPT_FIELD: row[chats.SHAREGPT_FIELD], "system": row.get("system")},
                               "sharegpt", data.messages_field, data.roles, data.tools_field)
    # The conversation is the prompt: it has no reply of its own to learn, which chat_problem asks for.
    if found and "no assistant turn" not in found[1]:
        return found
    for name in names:
        problem = chats.sharegpt_turns_problem(_turns(row[name]), data.roles)
        if problem:
            return name, problem
    return _pair_shape_problem(pair_of(row, "sharegpt_preference", data), names, implicit=False)


def _pair_shape_problem(pair: Pair, names: tuple[str, str], implicit: bool) -> tuple[str, str] | None:
    if identical(pair):
        return None  # dropped and counted by cleaning (identical_pairs), as any identical pair
    for name, reply in zip(names, (pair.chosen, pair.rejected)):
        if not reply:
            return name, "is the same chat as the other reply's up to its end: nothing is left to prefer"
        if not any(m["role"] == "assistant" for m in reply):
            return name, ("has no assistant turn: the chats part before any reply" if implicit else
                          "has no assistant turn: a reply is the assistant's")
    if implicit and not pair.prompt:
        return names[0], ("shares no opening turns with the rejected chat: an implicit prompt is the turns both "
                          "start with (or give a prompt field)")
    if not pair.prompt:
        return "prompt", "is empty: a reply answers a prompt"
    if pair.prompt[-1]["role"] == "assistant":
        return "prompt", "ends with an assistant turn: the replies compared are the assistant's next turn"
    return None
