"""Turn rows into token ids for each task, and pad them into batches.

Training and generation format prompts with the same function (`format_prompt`), so a tuned model
is always asked questions in exactly the shape it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.errors import DataError, ModelError
from ftcli.recipe import Recipe

IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat_template(tokenizer, template: str) -> bool:
    """Whether prompts go through the tokenizer's chat template: `data.template` auto (when there is
    one), chat (required: an error without one) or plain."""
    if template == "chat" and not has_chat_template(tokenizer):
        raise ModelError(f"data.template is 'chat' but the tokenizer of {tokenizer.name_or_path} has no chat template",
                         hint="use a chat model, or set data.template: plain (or auto) for plain prompts")
    return template == "chat" or (template == "auto" and has_chat_template(tokenizer))


def format_prompt(tokenizer, prompt: str, system_prompt: str | None = None, chat: bool = True) -> str:
    """The text a model sees before its answer: the chat template, or the prompt and a newline."""
    if chat:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{prefix}{prompt}\n"


def prompt_token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a formatted prompt. Chat templates write their own special tokens; plain prompts
    get the tokenizer's BOS, as a causal LM saw in pre-training."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if not has_chat_template(tokenizer) and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    return ids


def _answer_ids(tokenizer, response: str, chat: bool) -> list[int]:
    """The response followed by the end-of-turn token, so the model learns to stop."""
    if chat:
        # Render a whole turn and take what follows the prompt: that carries the template's own
        # end-of-turn markup (e.g. "<|im_end|>\n") instead of a guessed EOS.
        probe = [{"role": "user", "content": "x"}]
        head = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(probe + [{"role": "assistant", "content": response}],
                                             tokenize=False)
        if full.startswith(head):
            return tokenizer(full[len(head):], add_special_tokens=False)["input_ids"]
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


@dataclass
class Tokenized:
    examples: list[dict]
    truncated: int = 0  # examples cut at max_length
    dropped: int = 0  # SFT examples whose whole response was cut away


def tokenize_sft(rows: list[dict], tokenizer, recipe: Recipe) -> Tokenized:
    d = recipe.data
    chat = uses_chat_template(tokenizer, d.template)
    out, truncated, dropped = [], 0, 0
    for row in rows:
        prompt = prompt_token_ids(tokenizer, format_prompt(tokenizer, str(row[d.prompt_field]),
                                                          recipe.generate.system_prompt, chat))
        answer = _answer_ids(tokenizer, str(row[d.response_field]), chat)
        ids = (prompt + answer)[: d.max_length]
        truncated += len(prompt) + len(answer) > d.max_length
        if len(ids) <= len(prompt):  # nothing left to learn from
            dropped += 1
            continue
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * len(prompt) + ids[len(prompt):]})
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
    enc = tokenizer([str(r[d.text_field]) for r in rows], truncation=True, max_length=d.max_length)
    out = [{"input_ids": ids, "labels": label2id[str(r[d.label_field])]}
           for ids, r in zip(enc["input_ids"], rows)]
    truncated = sum(len(ids) >= d.max_length for ids in enc["input_ids"])
    return Tokenized(out, truncated)


def tokenize(mode: str, rows: list[dict], tokenizer, recipe: Recipe, label2id=None, source="data") -> Tokenized:
    if mode == "classification":
        return tokenize_classification(rows, tokenizer, recipe, label2id, source)
    return (tokenize_sft if mode == "sft" else tokenize_text)(rows, tokenizer, recipe)


class PadCollator:
    """Pads a list of examples to the longest one in the batch (dynamic padding, right side)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        batch = {
            "input_ids": torch.full((len(examples), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
        }
        token_labels = isinstance(examples[0]["labels"], list)
        labels = (torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long) if token_labels
                  else torch.tensor([e["labels"] for e in examples], dtype=torch.long))
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(e["input_ids"])
            batch["attention_mask"][i, :n] = 1
            if token_labels:
                labels[i, :n] = torch.tensor(e["labels"])
        batch["labels"] = labels
        return batch
