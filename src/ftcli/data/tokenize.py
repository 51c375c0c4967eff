"""Rows into token ids, for each task: SFT (prompt masked, reply learned), plain text, seq2seq,
classification and masked-lm.

SFT prompts are rendered by `templates` (data.template), for training here and for generation, so a
tuned model is always asked in exactly the shape it was trained on (tests/test_templates.py checks the
two agree token for token). masked-lm eval examples are masked here, once, seeded per example (so
every evaluation scores the same masks); training ones are masked batch by batch in `collators`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

from ftcli.data import templates
from ftcli.data.generation_prompts import prompt_and_reference
from ftcli.errors import DataError, ModelError
from ftcli.recipe import Recipe

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)


def prompt_token_ids(tokenizer, text: str, rendered_chat: bool = False) -> list[int]:
    """Token ids of a text that opens an example: a prompt, or a plain text to continue.

    A rendered chat carries its template's own special tokens. Other text gets what `tokenizer(text)`
    adds (a BOS for Llama, Gemma, Mistral), never a closing EOS (it would end the prompt). A tokenizer
    that has a BOS but adds none itself (GPT-2's, a trained one) gets it too, as a causal LM saw in
    pre-training; `saved_tokenizer` makes the run's saved tokenizer add it, so `tokenizer(text)` on a
    finished run gives exactly the ids training used."""
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = plain if rendered_chat else _without_closing_eos(tokenizer, tokenizer(text)["input_ids"], plain)
    bos = tokenizer.bos_token_id
    if not templates.has_chat_template(tokenizer) and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def _without_closing_eos(tokenizer, ids: list[int], plain: list[int]) -> list[int]:
    """`ids` less an EOS the tokenizer appended itself (add_eos_token tokenizers)."""
    eos = tokenizer.eos_token_id
    if ids and eos is not None and ids[-1] == eos and (not plain or plain[-1] != eos):
        return ids[:-1]
    return ids


def saved_tokenizer(tokenizer, task: str):
    """The tokenizer a causal-lm run saves: one that adds the BOS `prompt_token_ids` gave every text and
    prompt (transformers' own `add_bos_token`), so plain `tokenizer(text)` on the saved run gives the
    ids training and `ftcli eval` used. Unchanged where ftcli adds nothing the tokenizer would not."""
    bos = tokenizer.bos_token_id
    if task != "causal-lm" or templates.has_chat_template(tokenizer) or bos is None:
        return tokenizer
    if tokenizer("a")["input_ids"][:1] == [bos]:
        return tokenizer
    aligned = copy.deepcopy(tokenizer)
    aligned.add_bos_token = True  # rewrites the post-processor (TokenizersBackend.update_post_processor)
    return aligned if aligned("a")["input_ids"][:1] == [bos] else tokenizer


def answer_ids(tokenizer, response: str) -> list[int]:
    """The response followed by EOS, so the model learns to stop (non-chat templates; a chat
    template writes its own end-of-turn markup, see `templates.chat_segments`)."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


@dataclass
class Tokenized:
    examples: list[dict]
    truncated: int = 0  # examples cut at max_length
    dropped: int = 0  # SFT examples whose whole response was cut away


def _sft_pieces(tokenizer, row: dict, recipe: Recipe, kind: str, format: str) -> list[tuple[list[int], bool]]:
    """A row as (token ids, learn) pieces: prompts and other turns learn=False, replies learn=True."""
    d, system = recipe.data, recipe.generate.system_prompt
    chat = templates.chat_setting(kind)
    if not chat:
        prompt, response = prompt_and_reference(row, recipe, format, tokenizer)
        return [(prompt_token_ids(tokenizer, prompt), False), (answer_ids(tokenizer, response), True)]
    conv = templates.conversation(row, d, format, system)
    texts = templates.chat_segments(tokenizer, conv, chat, last_only=d.assistant_turns == "last")
    # The first piece opens the example and gets BOS as a generation prompt does; the rest continue it.
    return [(prompt_token_ids(tokenizer, text, rendered_chat=True) if i == 0
             else tokenizer(text, add_special_tokens=False)["input_ids"], learn) for i, (text, learn) in enumerate(texts)]


def row_label(row: dict) -> str:
    text = next((v for v in row.values() if isinstance(v, str) and v.strip()), None)
    if text is None:  # a chat: its first turn with text
        turns = next((v for v in row.values() if isinstance(v, list)), [])
        text = next((str(t.get("content") or t.get("value")) for t in turns if isinstance(t, dict)
                     and (t.get("content") or t.get("value"))), "")
    text = " ".join(text.split())
    return f"the row that begins {text[:60] + ('...' if len(text) > 60 else '')!r}"


def tokenize_sft(rows: list[dict], tokenizer, recipe: Recipe, format: str = "prompt_response",
                 source: str = "data") -> Tokenized:
    """SFT examples of `format` rows in data.template's format; labels are -100 except on the
    replies learned (everywhere with data.train_on_prompt)."""
    d = recipe.data
    kind = templates.check_rows(tokenizer, d, format, rows, source)
    out, truncated, dropped = [], 0, 0
    for row in rows:
        ids, labels, replies = [], [], []
        try:
            pieces = _sft_pieces(tokenizer, row, recipe, kind, format)
        except DataError as exc:  # rows are cleaned and shuffled by now: name the row by its text
            raise DataError(f"{source}: {row_label(row)}: {exc.message}", hint=exc.hint) from None
        for piece, learn in pieces:
            ids += piece
            labels += piece if learn or d.train_on_prompt else [IGNORE_INDEX] * len(piece)
            replies += [learn] * len(piece)
        truncated += len(ids) > d.max_length
        # Dropped when no reply token survives the cut, with train_on_prompt too: a prompt without
        # its answer teaches nothing SFT is for, and both settings then train on the same examples.
        if not any(replies[: d.max_length]):
            dropped += 1
            continue
        out.append({"input_ids": ids[: d.max_length], "labels": labels[: d.max_length]})
    return Tokenized(out, truncated, dropped)


def tokenize_text(rows: list[dict], tokenizer, recipe: Recipe) -> Tokenized:
    d = recipe.data
    out, truncated = [], 0
    for row in rows:
        ids = prompt_token_ids(tokenizer, str(row[d.text_field]))
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        truncated += len(ids) > d.max_length
        ids = ids[: d.max_length]
        out.append({"input_ids": ids, "labels": list(ids)})
    return Tokenized(out, truncated)


def encode_with_specials(tokenizer, max_length: int, **texts) -> tuple[list[list[int]], set[int]]:
    """Token ids of a batch (`text=[...]` or `text_target=[...]`) with the tokenizer's own special
    tokens, and the positions of those longer than max_length. Those are cut by the tokenizer
    itself, so an end token such as T5's </s> survives the cut."""
    ids = tokenizer(**texts)["input_ids"]
    long = [i for i, one in enumerate(ids) if len(one) > max_length]
    if long:
        subset = {key: [values[i] for i in long] for key, values in texts.items()}
        for i, cut in zip(long, tokenizer(**subset, truncation=True, max_length=max_length)["input_ids"]):
            ids[i] = cut
    return ids, set(long)


def tokenize_seq2seq(rows: list[dict], tokenizer, recipe: Recipe) -> Tokenized:
    """Encoder input: source_prefix + source; labels: the target, both as the tokenizer writes them
    (T5 ends each with </s>). The model builds its decoder input by shifting the labels right."""
    d = recipe.data
    if not rows:
        return Tokenized([])
    sources, cut_sources = encode_with_specials(
        tokenizer, d.max_length, text=[d.source_prefix + str(r[d.prompt_field]) for r in rows])
    targets, cut_targets = encode_with_specials(
        tokenizer, d.max_length, text_target=[str(r[d.response_field]) for r in rows])
    examples = [{"input_ids": s, "labels": t} for s, t in zip(sources, targets)]
    return Tokenized(examples, truncated=len(cut_sources | cut_targets))


def _as_number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def label_mapping(train_rows: list[dict], field: str) -> dict[str, int]:
    """label2id over the data's own label values (as strings), in a stable order: numeric labels
    numerically (so 0/1 stay 0/1 and 10 comes after 2), others alphabetically."""
    values = {str(r[field]) for r in train_rows}
    numbers = {v: _as_number(v) for v in values}
    if all(n is not None for n in numbers.values()):
        ordered = sorted(values, key=lambda v: (numbers[v], v))
    else:
        ordered = sorted(values)
    return {label: i for i, label in enumerate(ordered)}


def tokenize_classification(rows: list[dict], tokenizer, recipe: Recipe, label2id: dict[str, int],
                            source: str = "eval data") -> Tokenized:
    d = recipe.data
    unseen = sorted({str(r[d.label_field]) for r in rows} - set(label2id))
    if unseen:
        raise DataError(f"{source}: label(s) {', '.join(unseen)} do not occur in the training data "
                        f"(training labels: {', '.join(label2id)})")
    if not rows:  # fast tokenizers fail on an empty batch (no eval split)
        return Tokenized([])
    enc = tokenizer([str(r[d.text_field]) for r in rows], truncation=True, max_length=d.max_length)
    out = [{"input_ids": ids, "labels": label2id[str(r[d.label_field])]}
           for ids, r in zip(enc["input_ids"], rows)]
    truncated = sum(len(ids) >= d.max_length for ids in enc["input_ids"])
    return Tokenized(out, truncated)


def mask_token_id(tokenizer) -> int:
    if tokenizer.mask_token_id is None:
        raise ModelError(f"masked-lm needs a tokenizer with a mask token; {tokenizer.name_or_path or 'this one'} "
                         "has none", hint="use an encoder's tokenizer (bert, roberta, ...) or tokenizer.train")
    return tokenizer.mask_token_id


def hide_tokens(ids, eligible, probability: float, generator, mask_id: int, vocab_size: int):
    """(inputs, labels) with `probability` of the `eligible` positions of `ids` (a tensor of any shape)
    hidden: 80% become the mask token, 10% a random token, 10% stay as they are — BERT's recipe, as in
    transformers' DataCollatorForLanguageModeling. Labels are the hidden tokens, -100 elsewhere."""
    import torch

    hidden = eligible & (torch.rand(ids.shape, generator=generator) < probability)
    if not hidden.any() and eligible.any():
        # Nothing hidden means no loss at all (0/0 = NaN): hide one token.
        hidden.view(-1)[eligible.reshape(-1).nonzero()[0]] = True
    labels = torch.where(hidden, ids, torch.full_like(ids, IGNORE_INDEX))
    roll = torch.rand(ids.shape, generator=generator)
    noise = torch.randint(vocab_size, ids.shape, generator=generator)
    masked = ids.clone()
    masked[hidden & (roll < 0.8)] = mask_id
    swap = hidden & (roll >= 0.8) & (roll < 0.9)
    masked[swap] = noise[swap]
    return masked, labels


def _example_seed(seed: int, ids: list[int]) -> int:
    # From the seed and the example's own tokens: its masks are the same whatever else is in the
    # eval set, in whichever order, in every evaluation, run, resumed run and `ftcli eval`.
    return int.from_bytes(hashlib.sha256(f"{seed}:{ids}".encode()).digest()[:7], "big")


def masked_examples(encoded: list[list[int]], tokenizer, probability: float, seed: int) -> list[dict]:
    """Eval examples with their tokens hidden once and for all, seeded per example, so that every
    evaluation of a model sees the same masks (comparable losses for early stopping and best-model
    selection, and base against tuned in `ftcli eval`)."""
    import torch

    mask_id, vocab_size = mask_token_id(tokenizer), len(tokenizer)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    out = []
    for ids in encoded:
        tensor = torch.tensor(ids, dtype=torch.long)
        generator = torch.Generator().manual_seed(_example_seed(seed, ids))
        masked, labels = hide_tokens(tensor, ~torch.isin(tensor, special), probability, generator, mask_id,
                                     vocab_size)
        out.append({"input_ids": masked.tolist(), "labels": labels.tolist()})
    return out


def tokenize_masked(rows: list[dict], tokenizer, recipe, source: str = "data", split: str = "train") -> Tokenized:
    """Each row's text with the tokenizer's own special tokens. Training examples carry no labels:
    the collator hides new tokens in every batch (fresh masks each epoch). Eval examples carry their
    masks (`masked_examples`)."""
    d = recipe.data
    if rows and d.text_field not in rows[0]:
        raise DataError(f"{source}: masked-lm learns from plain text, but the rows have no '{d.text_field}' field "
                        f"(they have: {', '.join(rows[0])})", hint="set data.text_field to your text field")
    texts = [str(r[d.text_field]) for r in rows]
    # (fast tokenizers fail on an empty batch: no eval split)
    encoded = tokenizer(texts, truncation=True, max_length=d.max_length)["input_ids"] if texts else []
    truncated = sum(len(ids) >= d.max_length for ids in encoded)  # (or exactly max_length long)
    if split == "eval":
        return Tokenized(masked_examples(encoded, tokenizer, d.mlm_probability, recipe.train.seed), truncated)
    return Tokenized([{"input_ids": ids} for ids in encoded], truncated)


def tokenize(mode: str, rows: list[dict], tokenizer, recipe: Recipe, label2id=None, source="data",
             format: str | None = None, split: str = "train") -> Tokenized:
    """`format`: the SFT row format (`Splits.format`); None means prompt_response. `split`: "eval"
    gives masked-lm examples their (fixed) masks; other tasks tokenize both splits alike."""
    if recipe.task == "masked-lm":
        return tokenize_masked(rows, tokenizer, recipe, source, split)
    if mode == "sft":
        return tokenize_sft(rows, tokenizer, recipe, format or "prompt_response", source)
    if mode == "classification":
        return tokenize_classification(rows, tokenizer, recipe, label2id, source)
    if mode == "seq2seq":
        return tokenize_seq2seq(rows, tokenizer, recipe)
    return tokenize_text(rows, tokenizer, recipe)
