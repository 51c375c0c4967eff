"""Preference pairs as token ids: the prompt once, and each reply as the tokens that follow it, in
exactly the format SFT trains and generation asks (the same templates, chat segments and BOS rules).

An example is {"prompt_ids", "chosen_ids", "rejected_ids"}: the form TRL's DPOTrainer scores (its
collator puts prompt+chosen and prompt+rejected in one batch, so both are one forward pass).
"""

from __future__ import annotations

from ftcli.data import templates
from ftcli.data.chats import Chat
from ftcli.data.pairs import Pair, pair_of
from ftcli.data.row_formats import columns_of
from ftcli.data.tokenize import Tokenized, answer_ids, row_label, prompt_token_ids
from ftcli.errors import DataError
from ftcli.recipe import Recipe


def check_pair_rows(tokenizer, recipe: Recipe, format: str, rows: list[dict], source: str = "data") -> str:
    """The kind of data.template for these pairs, once checked that it can render them (`ftcli
    validate` runs this too)."""
    d = recipe.data
    kind = templates.resolve(tokenizer, d.template)
    conversational = any(pair_of(r, format, d).conversational for r in rows)
    templates.check_template(kind, d, format, columns_of(rows), source, conversational=conversational)
    return kind


def tokenize_pairs(rows: list[dict], tokenizer, recipe: Recipe, format: str, source: str = "data") -> Tokenized:
    """Pairs longer than data.max_length keep their start (the whole prompt, the replies cut); a pair
    whose prompt alone fills it is dropped: no reply token would be scored."""
    d = recipe.data
    kind = check_pair_rows(tokenizer, recipe, format, rows, source) if rows else "plain"
    out, truncated, dropped = [], 0, 0
    for row in rows:
        pair = pair_of(row, format, d)
        try:
            prompt, chosen, rejected = _pair_ids(tokenizer, pair, row, recipe, kind)
        except DataError as exc:
            raise DataError(f"{source}: {row_label(row)}: {exc.message}", hint=exc.hint) from None
        room = d.max_length - len(prompt)
        if room <= 0:
            dropped += 1
            continue
        truncated += max(len(chosen), len(rejected)) > room
        out.append({"prompt_ids": prompt, "chosen_ids": chosen[:room], "rejected_ids": rejected[:room]})
    return Tokenized(out, truncated, dropped)


def _pair_ids(tokenizer, pair: Pair, row: dict, recipe: Recipe, kind: str) -> tuple[list[int], list[int], list[int]]:
    d, system = recipe.data, recipe.generate.system_prompt
    chat = templates.chat_setting(kind)
    if not chat:
        # A string pair is a prompt_response row twice over: its prompt as SFT would write it.
        fields = {**row, d.prompt_field: pair.prompt}
        prompt = templates.text_prompt(kind, fields, d, "prompt_response", system)
        return (prompt_token_ids(tokenizer, prompt), answer_ids(tokenizer, pair.chosen),
                answer_ids(tokenizer, pair.rejected))
    messages = pair.prompt if pair.conversational else [{"role": "user", "content": pair.prompt}]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    heads, replies = [], []
    for reply in (pair.chosen, pair.rejected):
        turns = reply if pair.conversational else [{"role": "assistant", "content": reply}]
        pieces = templates.chat_segments(tokenizer, Chat(messages + turns, len(messages), pair.tools), chat,
                                         last_only=False)
        heads.append(pieces[0][0])
        replies.append(tokenizer("".join(text for text, _ in pieces[1:]), add_special_tokens=False)["input_ids"])
    if heads[0] != heads[1]:  # the same turns before both replies: a template that differs is a bug to report
        raise DataError("the chat template renders the prompt differently before the chosen and the rejected reply")
    return prompt_token_ids(tokenizer, heads[0], rendered_chat=True), replies[0], replies[1]
