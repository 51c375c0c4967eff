"""Row formats: which fields a run reads from each row, chosen from the task and the data's columns.

A format says which columns must exist, which fields must be non-empty for a row to be used, which
hold text (normalised, measured and compared by `ftcli.cleaning`), and the run mode it implies
(classification, sft, text or seq2seq). Rows stay raw dicts; `ftcli.preprocess` formats them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftcli.data.chats import PROMPT_COMPLETION, SHAREGPT_FIELD, chat_problem, is_conversational
from ftcli.data.pairs import PREFERENCE_FORMATS, UNPAIRED, UNPAIRED_FIELDS, preference_problem
from ftcli.errors import DataError
from ftcli.recipe import DataSection, Recipe

ALPACA_FIELDS = ("instruction", "input", "output")  # the Stanford Alpaca names; "input" may be absent
SFT_FORMATS = ("prompt_response", "alpaca", "messages", "prompt_completion", "sharegpt")
_CHAT_HINTS = {
    "messages": "each row needs a list of {\"role\": ..., \"content\": ...} turns (role system, user, assistant "
                "or tool; an assistant turn may hold tool_calls instead of content) with at least one assistant "
                "turn, and each tool turn after the call it answers",
    "sharegpt": "each row needs conversations: a list of {\"from\": ..., \"value\": ...} turns, each 'from' "
                "mapped by data.roles (default human, gpt, system, function_call, observation), with at least "
                "one assistant turn; a function_call's value is the call's JSON {\"name\": ..., \"arguments\": ...}",
    "prompt_completion": "prompt and completion are both strings, or both lists of {\"role\": ..., "
                         "\"content\": ...} turns with at least one assistant turn in the completion",
}
_PAIR_HINT = ("a pair is a prompt with a chosen and a rejected reply: prompt, chosen and rejected strings; or lists "
              "of {\"role\": ..., \"content\": ...} turns (without prompt: two whole chats whose shared opening "
              "turns are the prompt); or ShareGPT conversations with chosen and rejected {\"from\", \"value\"} turns")
_UNPAIRED_HINT = ("an unpaired row (KTO) is a prompt, a completion (both strings, or both lists of {\"role\": ..., "
                  "\"content\": ...} turns) and a label: true or false")
# TRL's preference columns: paired (chosen/rejected) and KTO's unpaired form (completion + a bool label).
PREFERENCE_PAIR = ("chosen", "rejected")


@dataclass(frozen=True)
class RowFormat:
    name: str  # prompt_response, alpaca, messages, prompt_completion, sharegpt, text, classification or seq2seq
    columns: tuple[str, ...]  # must exist in the data
    required: tuple[str, ...]  # must be non-empty in a row, or the row is incomplete
    texts: tuple[str, ...]  # string fields that hold text
    keys: tuple[str, ...]  # the fields two rows must share to be duplicates
    chats: tuple[str, ...] = ()  # fields that hold lists of turns (prompt_completion: when conversational)
    content: str = "content"  # the key of a turn's text
    messages_field: str = "messages"  # data.messages_field, for `chats.chat_problem`
    roles: tuple[tuple[str, str], ...] = ()  # sharegpt: data.roles, as pairs (a frozen dataclass)
    tools_field: str = "tools"  # chats: data.tools_field
    data: DataSection | None = field(default=None, compare=False)  # preference pairs: the data settings

    @property
    def mode(self) -> str:
        if self.name in PREFERENCE_FORMATS:
            return "preference"
        return "sft" if self.name in SFT_FORMATS else self.name


def row_format(recipe: Recipe, name: str) -> RowFormat:
    d = recipe.data
    pair = (d.chosen_field, d.rejected_field)
    if name == "preference":  # prompt: absent in TRL's implicit-prompt form
        return RowFormat(name, pair, pair, ("prompt",) + pair, ("prompt",) + pair + (d.tools_field,),
                         chats=("prompt",) + pair, tools_field=d.tools_field, data=d)
    if name == UNPAIRED:
        texts = UNPAIRED_FIELDS[:2]
        return RowFormat(name, UNPAIRED_FIELDS, UNPAIRED_FIELDS, texts, UNPAIRED_FIELDS + (d.tools_field,),
                         chats=texts, tools_field=d.tools_field, data=d)
    if name == "sharegpt_preference":
        fields = (SHAREGPT_FIELD,) + pair
        return RowFormat(name, fields, fields, ("system",), ("system",) + fields + (d.tools_field,), chats=fields,
                         content="value", roles=tuple(d.roles.items()), tools_field=d.tools_field, data=d)
    if name == "classification":
        return RowFormat(name, (d.text_field, d.label_field), (d.text_field, d.label_field), (d.text_field,),
                         (d.text_field, d.label_field))
    if name in ("prompt_response", "seq2seq"):
        pair = (d.prompt_field, d.response_field)
        return RowFormat(name, pair, pair, pair, pair)
    if name == "alpaca":
        needed = ("instruction", "output")
        return RowFormat(name, needed, needed, ALPACA_FIELDS, ALPACA_FIELDS)
    # Two chats with the same turns and other tools are different examples: tools are part of the key.
    if name == "messages":
        chat = (d.messages_field,)
        return RowFormat(name, chat, chat, (), chat + (d.tools_field,), chats=chat, messages_field=d.messages_field,
                         tools_field=d.tools_field)
    if name == "prompt_completion":
        return RowFormat(name, PROMPT_COMPLETION, PROMPT_COMPLETION, PROMPT_COMPLETION,
                         PROMPT_COMPLETION + (d.tools_field,), chats=PROMPT_COMPLETION, tools_field=d.tools_field)
    if name == "sharegpt":
        chat = (SHAREGPT_FIELD,)
        return RowFormat(name, chat, chat, ("system",), ("system", SHAREGPT_FIELD, d.tools_field), chats=chat,
                         content="value", roles=tuple(d.roles.items()), tools_field=d.tools_field)
    return RowFormat("text", (d.text_field,), (d.text_field,), (d.text_field,), (d.text_field,))


def detect_format(recipe: Recipe, columns: list[str], source: str, rows: list[dict] = ()) -> RowFormat:
    """The format the task and data ask for; an error listing the fields the data has otherwise.
    `rows`: the first rows, for formats told apart by their values (ShareGPT's {from, value} turns)."""
    d = recipe.data
    fixed = {"sequence-classification": "classification", "seq2seq": "seq2seq", "masked-lm": "text"}
    if recipe.task in fixed:
        # data.format is for causal-lm; elsewhere only the name that means the task's own fields fits.
        fitting = {"seq2seq": "prompt_response", "masked-lm": "text"}.get(recipe.task)
        if d.format not in ("auto", fitting):
            raise DataError(f"data.format '{d.format}' does not apply to task {recipe.task}",
                            hint="leave data.format at auto; the task decides which fields are read")
        fmt = row_format(recipe, fixed[recipe.task])
    elif recipe.tunes_on_pairs:
        fmt = _detect_pairs(recipe, columns, source)
    elif d.format != "auto":
        fmt = row_format(recipe, d.format)
    else:
        fmt = _detect_causal(recipe, columns, source, list(rows))
    require_columns(fmt, columns, source, recipe)
    return fmt


def _detect_causal(recipe: Recipe, columns: list[str], source: str, rows: list[dict]) -> RowFormat:
    d = recipe.data
    have = set(columns)
    if not {d.prompt_field, d.response_field, d.messages_field, d.text_field} & set(PREFERENCE_PAIR):
        _refuse_preference_data(have, source, rows)  # unless the recipe maps a preference column itself
    if d.messages_field in have:
        return row_format(recipe, "messages")
    if SHAREGPT_FIELD in have and _sharegpt_turns(rows):
        return row_format(recipe, "sharegpt")
    if {d.prompt_field, d.response_field} <= have:
        return row_format(recipe, "prompt_response")
    if set(PROMPT_COMPLETION) <= have:
        return row_format(recipe, "prompt_completion")
    if {"instruction", "output"} <= have:
        return row_format(recipe, "alpaca")
    if d.text_field in have:
        return row_format(recipe, "text")
    raise DataError(f"{source}: causal-lm needs fields '{d.prompt_field}' and '{d.response_field}' (SFT), "
                    "'prompt' and 'completion' (TRL's prompt/completion), 'instruction' and 'output' (alpaca), "
                    f"'{d.messages_field}' (chat turns), '{SHAREGPT_FIELD}' of {{from, value}} turns (ShareGPT) "
                    f"or '{d.text_field}' (plain text); the data has: {', '.join(columns) or '(none)'}",
                    hint="set data.prompt_field/response_field, data.messages_field or data.text_field to the "
                         "names your data uses")


def _detect_pairs(recipe: Recipe, columns: list[str], source: str) -> RowFormat:
    d = recipe.data
    if d.format not in ("auto", "sharegpt"):
        raise DataError(f"data.format '{d.format}' holds no preference pairs",
                        hint="leave data.format at auto (TRL's prompt/chosen/rejected) or set sharegpt "
                             "(conversations with chosen and rejected turns)")
    have = set(columns)
    unpaired = set(UNPAIRED_FIELDS) <= have and not {d.chosen_field, d.rejected_field} <= have
    method = recipe.preference.method if recipe.preference else None
    if unpaired and method == "kto":
        return row_format(recipe, UNPAIRED)
    if unpaired:
        who = f"method {method}" if method else "a reward model"
        raise DataError(f"{source}: this is unpaired preference data (prompt, completion and a true/false label), "
                        f"which {who} cannot use: it compares a chosen and a rejected reply to the same prompt",
                        hint="pair the replies (prompt, chosen, rejected), or tune on them with "
                             "`preference: {method: kto}`, which learns from single replies marked good or bad")
    if d.format == "sharegpt" or (SHAREGPT_FIELD in have and "prompt" not in have):
        return row_format(recipe, "sharegpt_preference")
    if {d.chosen_field, d.rejected_field} <= have:
        return row_format(recipe, "preference")
    raise DataError(f"{source}: {'preference tuning' if recipe.preference else 'a reward model'} needs pairs: fields '{d.chosen_field}' and '{d.rejected_field}' "
                    f"(with 'prompt', or as whole chats), or '{SHAREGPT_FIELD}' with them (ShareGPT); the data has: "
                    f"{', '.join(columns) or '(none)'}",
                    hint="set data.chosen_field / data.rejected_field to the names your data uses, or remove the "
                         "preference: section to fine-tune on plain examples")


def _refuse_preference_data(have: set[str], source: str, rows: list[dict]) -> None:
    """Preference files read as SFT would train on the first column that fits, rejected replies and
    all, or fail row by row: say what the file is instead."""
    unpaired = {"prompt", "completion", "label"} <= have and any(isinstance(r.get("label"), bool) for r in rows[:1000])
    if not (set(PREFERENCE_PAIR) <= have or unpaired):
        return
    kind = ("pairs of a chosen and a rejected reply" if not unpaired else
            "unpaired preference data (KTO's prompt, completion and a true/false label)")
    how = ("add a preference: section (e.g. `preference: {method: dpo}`) to tune on the pairs" if not unpaired else
           "add `preference: {method: kto}` to tune on replies marked good or bad")
    raise DataError(f"{source}: this is preference data ({kind}), not supervised fine-tuning data",
                    hint=f"{how}; or, to fine-tune on the preferred replies alone, set data.prompt_field: prompt "
                         "and data.response_field: chosen")


def _sharegpt_turns(rows: list[dict]) -> bool:
    """Whether the first row's conversation is ShareGPT's {from, value} turns."""
    turns = next((r[SHAREGPT_FIELD] for r in rows[:1000] if isinstance(r.get(SHAREGPT_FIELD), list)
                  and r[SHAREGPT_FIELD]), [])
    return bool(turns) and isinstance(turns[0], dict) and "from" in turns[0]


def require_columns(fmt: RowFormat, columns: list[str], source: str, recipe: Recipe) -> None:
    missing = [c for c in fmt.columns if c not in columns]
    if not missing:
        return
    keys = {"classification": "data.text_field / data.label_field", "text": "data.text_field",
            "messages": "data.messages_field", "alpaca": "data.format (alpaca reads instruction/input/output)",
            "prompt_completion": "data.format (prompt_completion reads prompt and completion)",
            "sharegpt": f"data.format (sharegpt reads {SHAREGPT_FIELD})"}
    raise DataError(f"{source}: field(s) {', '.join(missing)} not found (needed by the {fmt.name} format); "
                    f"the data has: {', '.join(columns) or '(none)'}",
                    hint=f"set {keys.get(fmt.name, 'data.prompt_field / data.response_field')} to the names "
                         "your data uses")


def columns_of(rows: list[dict]) -> list[str]:
    """The fields of the first 1,000 rows, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _filled(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip()) and value != []


def is_complete(row: dict, fmt: RowFormat, source: str, number: int) -> bool:
    """Whether every required field has a value. A chat that is there but malformed is not merely
    incomplete: it is an error naming the row, since dropping it silently would hide a data bug."""
    if not all(_filled(row.get(f)) for f in fmt.required):
        return False
    if fmt.mode == "preference":
        problem = preference_problem(row, fmt.name, fmt.data)
        if problem:
            field, what = problem
            raise DataError(f"{source}: row {number}: '{field}' {what}",
                            hint=_UNPAIRED_HINT if fmt.name == UNPAIRED else _PAIR_HINT)
        return True
    conversational = is_conversational(row, fmt.name)
    for field in fmt.texts:
        if isinstance(row.get(field), (list, dict)) and not (conversational and field in fmt.chats):
            raise _structured_text(row[field], field, source, number)
    if conversational:
        problem = chat_problem(row, fmt.name, fmt.messages_field, dict(fmt.roles), fmt.tools_field)
        if problem:
            field, what = problem
            raise DataError(f"{source}: row {number}: '{field}' {what}", hint=_CHAT_HINTS[fmt.name])
    return True


def _structured_text(value, field: str, source: str, number: int) -> DataError:
    """A list or mapping where text belongs: str() of it would train the model on a Python repr."""
    kind = "list" if isinstance(value, list) else "mapping"
    turns = isinstance(value, list) and value and all(isinstance(t, dict) and "role" in t for t in value)
    hint = ("a list of {role, content} turns is a chat: use data.format: messages, or, for TRL's "
            "conversational prompt/completion, fields prompt and completion" if turns else
            "give the field a string, or point the format at a text field (data.prompt_field, data.text_field, ...)")
    return DataError(f"{source}: row {number}: '{field}' is a {kind}, not text; ftcli never turns a {kind} into "
                     "training text", hint=hint)


def row_texts(row: dict, fmt: RowFormat) -> list[str]:
    """The text a row contributes (what min_chars/max_chars measure): text fields, and turns' text."""
    texts = []
    for field in dict.fromkeys(fmt.texts + fmt.chats):
        value = row.get(field)
        if isinstance(value, dict):  # a ShareGPT reply: one turn
            value = [value]
        if isinstance(value, list):  # a turn that only calls tools has no text (content None)
            texts += [turn[fmt.content] for turn in value if isinstance(turn, dict)
                      and isinstance(turn.get(fmt.content), str)]
        elif value is not None:
            texts.append(str(value))
    return texts
