"""Preference pairs as token ids: the prompt once, and each reply as the tokens that follow it, in
exactly the format SFT trains and generation asks (the same templates, chat segments and BOS rules).

An example is {"prompt_ids", "chosen_ids", "rejected_ids"}: the form TRL's DPOTrainer scores (its
collator puts prompt+chosen and prompt+rejected in one batch, so both are one forward pass). An
unpaired row (KTO) is {"prompt_ids", "completion_ids", "label"}, the form TRL's KTOTrainer scores.
"""

from __future__ import annotations

from ftcli.data import templates
from ftcli.data.chats import Chat
from ftcli.data.pairs import UNPAIRED, Completion, Pair, completion_of, pair_of
from ftcli.data.row_formats import columns_of
from ftcli.data.tokenize import Tokenized, answer_ids, row_label, prompt_token_ids
from ftcli.errors import DataError
from ftcli.recipe import Recipe


def check_pair_rows(tokenizer, recipe: Recipe, format: str, rows: list[dict], source: str = "data") -> str:
    """The kind of data.template for these pairs (or unpaired replies), once checked that it can render
    them (`ftcli validate` runs this too)."""
    d = recipe.data
    kind = templates.resolve(tokenizer, d.template)
    conversational = any(_read(r, format, d).conversational for r in rows)
    templates.check_template(kind, d, format, columns_of(rows), source, conversational=conversational)
    return kind


def preference_example_length(e: dict) -> int:
    """What an example costs: its prompt and its longer reply (a pair's two are in one batch)."""
    if "completion_ids" in e:
        return len(e["prompt_ids"]) + len(e["completion_ids"])
    return len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))


def _read(row: dict, format: str, data) -> Pair | Completion:
    return completion_of(row, data) if format == UNPAIRED else pair_of(row, format, data)


def tokenize_pairs(rows: list[dict], tokenizer, recipe: Recipe, format: str, source: str = "data") -> Tokenized:
    """Pairs longer than data.max_length keep their start (the whole prompt, the replies cut); a pair
    whose prompt alone fills it is dropped: no reply token would be scored. Unpaired rows (KTO) alike,
    as {"prompt_ids", "completion_ids", "label"}."""
    d = recipe.data
    kind = check_pair_rows(tokenizer, recipe, format, rows, source) if rows else "plain"
    out, truncated, dropped = [], 0, 0
    for row in rows:
        read = _read(row, format, d)
        replies = [read.completion] if format == UNPAIRED else [read.chosen, read.rejected]
        try:
            prompt, replies = _prompt_and_replies(tokenizer, read, replies, row, recipe, kind)
        except DataError as exc:
            raise DataError(f"{source}: {row_label(row)}: {exc.message}", hint=exc.hint) from None
        room = d.max_length - len(prompt)
        if room <= 0:
            dropped += 1
            continue
        truncated += max(len(r) for r in replies) > room
        if format == UNPAIRED:
            out.append({"prompt_ids": prompt, "completion_ids": replies[0][:room], "label": read.desirable})
        else:
            out.append({"prompt_ids": prompt, "chosen_ids": replies[0][:room], "rejected_ids": replies[1][:room]})
    return Tokenized(out, truncated, dropped)


def _prompt_and_replies(tokenizer, read: Pair | Completion, replies: list, row: dict, recipe: Recipe,
                        kind: str) -> tuple[list[int], list[list[int]]]:
    """The prompt's ids, and each reply's ids after it."""
    d, system = recipe.data, recipe.generate.system_prompt
    chat = templates.chat_setting(kind)
    if not chat:
        # A string pair is a prompt_response row twice over: its prompt as SFT would write it.
        fields = {**row, d.prompt_field: read.prompt}
        prompt = templates.text_prompt(kind, fields, d, "prompt_response", system)
        return prompt_token_ids(tokenizer, prompt), [answer_ids(tokenizer, r) for r in replies]
    messages = read.prompt if read.conversational else [{"role": "user", "content": read.prompt}]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    heads, ids = [], []
    for reply in replies:
        turns = reply if read.conversational else [{"role": "assistant", "content": reply}]
        pieces = templates.chat_segments(tokenizer, Chat(messages + turns, len(messages), read.tools), chat,
                                         last_only=False)
        heads.append(pieces[0][0])
        ids.append(tokenizer("".join(text for text, _ in pieces[1:]), add_special_tokens=False)["input_ids"])
    if any(head != heads[0] for head in heads):  # the same turns before both replies: a template that differs is a bug
        raise DataError("the chat template renders the prompt differently before the chosen and the rejected reply")
    return prompt_token_ids(tokenizer, heads[0], rendered_chat=True), ids
