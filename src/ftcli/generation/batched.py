"""Batched generation: prompts formatted, tokenized, batched by similar length (left-padded with an
attention mask, so greedy output for a prompt does not depend on what else is in its batch), and
answers cut at stop strings.

Several answers per prompt (`num_return_sequences` > 1): a list per prompt.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

from ftcli.data.tokenize import prompt_token_ids
from ftcli.generation.prompting import check_settings, _sampling, few_shot_examples, format_generation_prompt
from ftcli.recipe import GenerateSection


def cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the first stop string in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def apply_stop(text: str, stops: Sequence[str]) -> str:
    """`text` cut at the first stop string (which is left out)."""
    cut = cut_at_stop(text, stops)
    return text if cut is None else text[:cut]


def generate_kwargs(tokenizer, settings: GenerateSection) -> dict:
    kwargs: dict = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
                    "repetition_penalty": settings.repetition_penalty}
    if _sampling(settings):
        # top_k 0 switches off a top-k a model's generation_config may set: unset means unlimited.
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                      top_k=settings.top_k or 0, num_return_sequences=settings.num_return_sequences)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if any(settings.stop):
        kwargs.update(stop_strings=[s for s in settings.stop if s], tokenizer=tokenizer)
    return kwargs


def _left_padded(id_lists: Sequence[list[int]], pad_id: int, device):
    import torch

    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        if ids:
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
    return input_ids.to(device), mask.to(device)


def _right_padded(id_lists: Sequence[list[int]], pad_id: int, device):
    """An encoder's batch, padded on the right as in training: an encoder with absolute positions
    (BART's) would see every token moved by left padding. Only a decoder must continue its prompt
    directly, which is why decoder-only batches are left-padded."""
    import torch

    width = max(len(ids) for ids in id_lists)
    input_ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, ids in enumerate(id_lists):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, :len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def padded_inputs(model, tokenizer, id_lists: Sequence[list[int]]):
    """One batch's input_ids and attention mask on the model's device: left-padded for a decoder,
    right-padded for an encoder-decoder (see `_right_padded`)."""
    pad = _right_padded if model.config.is_encoder_decoder else _left_padded
    return pad(id_lists, tokenizer.pad_token_id, model.device)


def prompt_ids(tokenizer, prompt: str, settings: GenerateSection, chat: bool, mode: str = "sft",
               history: Sequence[tuple[str, str]] = (), examples=None) -> list[int]:
    """Token ids the model is given for a raw prompt, formatted as `settings` say. seq2seq: the
    encoder's input (source prefix and prompt, with the tokenizer's special tokens such as T5's </s>,
    as in training); it has no conversation, so `history` does not apply."""
    if mode == "seq2seq":
        return tokenizer(format_generation_prompt(tokenizer, prompt, settings, False, mode,
                                                  examples=examples))["input_ids"]
    text = format_generation_prompt(tokenizer, prompt, settings, chat, mode, history=history, examples=examples)
    return prompt_token_ids(tokenizer, text, rendered_chat=bool(chat))


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids


def _lengths(new_tokens, finished: set[int]) -> list[int]:
    """Tokens each row generated: up to and including its first end token (the rest is padding)."""
    lengths = []
    for row in new_tokens.tolist():
        end = next((i for i, t in enumerate(row) if t in finished), None)
        lengths.append(len(row) if end is None else end + 1)
    return lengths


def generate_ids(model, tokenizer, id_lists: Sequence[list[int]], settings: GenerateSection,
                 streamer=None) -> tuple[list[list[str]], int]:
    """One batch of tokenized prompts → (answers per prompt, tokens generated in all)."""
    import torch

    encoder_decoder = model.config.is_encoder_decoder
    input_ids, mask = padded_inputs(model, tokenizer, id_lists)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer,
                             **generate_kwargs(tokenizer, settings))
    # A decoder-only model's output repeats the prompt; an encoder-decoder's is the decoder's own
    # sequence, after its start token.
    new = out[:, 1:] if encoder_decoder else out[:, input_ids.shape[1]:]
    n = settings.num_return_sequences if _sampling(settings) else 1
    texts = [apply_stop(t, settings.stop).strip()
             for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return [texts[i * n:(i + 1) * n] for i in range(len(id_lists))], sum(_lengths(new, _stop_ids(model, tokenizer)))


def iter_generate(model, tokenizer, prompts: Iterable[str], settings: GenerateSection, chat: bool,
                  batch_size: int | None = None, mode: str = "sft", progress=None) -> Iterator[list[str]]:
    """Answers (a list of num_return_sequences strings) for each raw prompt, yielded in input order.
    Prompts are formatted as `settings` says, and batched by similar length within windows of
    16 batches (so results can be written out as they come)."""
    check_settings(settings)
    batch_size = batch_size or settings.batch_size
    examples = few_shot_examples(settings)
    if settings.seed is not None:
        from transformers import set_seed

        set_seed(settings.seed)
    prompts = list(prompts)
    window = batch_size * 16
    for start in range(0, len(prompts), window):
        ids = [prompt_ids(tokenizer, p, settings, chat, mode, examples=examples)
               for p in prompts[start:start + window]]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        answers: list[list[str] | None] = [None] * len(ids)
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            texts, _ = generate_ids(model, tokenizer, [ids[i] for i in chunk], settings)
            for i, t in zip(chunk, texts):
                answers[i] = t
            if progress:  # after every batch: a window of 16 can take minutes
                progress(start + b + len(chunk), len(prompts))
        yield from answers


def generate_texts(model, tokenizer, prompts: list[str], settings: GenerateSection, chat: bool,
                   batch_size: int | None = None, mode: str = "sft") -> list[str]:
    """The generated text (first answer, stop strings applied) for each raw user prompt, in order.
    Prompts are formatted as `settings` says (chat template / template / few-shot); `mode` "text"
    continues plain prompts as they are instead of the SFT prompt format."""
    one = settings.model_copy(update={"num_return_sequences": 1})
    return [answers[0] for answers in iter_generate(model, tokenizer, prompts, one, chat, batch_size, mode)]


def measure_throughput(model, tokenizer, prompts: list[str], settings: GenerateSection, chat: bool,
                       batch_size: int | None = None, mode: str = "sft") -> dict:
    """Greedy generation of `prompts` one at a time vs in batches: seconds, tokens, tokens/s, the
    speed-up, and whether both gave the same texts."""
    greedy = settings.model_copy(update={"temperature": 0.0, "num_return_sequences": 1})
    batch_size = batch_size or greedy.batch_size
    examples = few_shot_examples(greedy)
    ids = [prompt_ids(tokenizer, p, greedy, chat, mode, examples=examples) for p in prompts]
    for warm_up in (ids[:1], ids[:batch_size]):  # first calls pay one-off costs; keep them out
        generate_ids(model, tokenizer, warm_up, greedy)

    def timed(groups):
        texts, tokens, t0 = [], 0, time.perf_counter()
        for group in groups:
            answers, n = generate_ids(model, tokenizer, group, greedy)
            texts += [a[0] for a in answers]
            tokens += n
        seconds = time.perf_counter() - t0
        return texts, {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}

    single_texts, single = timed([[i] for i in ids])
    batched_texts, batched = timed([ids[b:b + batch_size] for b in range(0, len(ids), batch_size)])
    return {"prompts": len(prompts), "batch_size": batch_size, "max_new_tokens": greedy.max_new_tokens,
            "single": single, "batched": batched,
            "speedup": round(batched["tokens_per_s"] / single["tokens_per_s"], 2),
            "same_texts": single_texts == batched_texts}
