"""`ftcli generate`: text from a run's tuned model (or its base, or any model), prompted as in training.

Prompt formats (one function, `format_generation_prompt`, builds them all):

* chat (the tokenizer has a chat template and `data.template` is not plain): the chat template, with
  `generate.system_prompt` as a system message and `generate.few_shot` pairs as earlier
  user/assistant turns — exactly `preprocess.format_prompt` when there are no examples, so a tuned
  model is asked in the shape it was trained on;
* plain SFT runs: the prompt and a newline (as in training), or `generate.template`
  (e.g. "Q: {prompt}\\nA:") when set; few-shot examples are the same blocks, each followed by its
  response and a blank line;
* plain-text (continuation) runs and base models used with `--model`: the prompt itself (or the
  template), continued.

Batches are left-padded with an attention mask, so greedy output for a prompt does not depend on what
else is in its batch (generate derives position ids from the mask).

Results of several answers per prompt (`num_return_sequences` > 1): the library returns a list per
prompt; `ftcli generate PROMPT` prints the answers separated by a line `---`; `--file` writes one JSON
line per prompt whose `generated_text` is then a list of strings (a string when there is one answer).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from ftcli import runs
from ftcli.errors import DataError, UserError
from ftcli.recipe import FewShotExample, GenerateSection

ANSWER_SEPARATOR = "---"  # between the answers to one prompt on stdout (num_return_sequences > 1)
EXIT_COMMAND = "/exit"
RESET_COMMAND = "/reset"


def log(message: str) -> None:
    print(f"[ftcli] {message}", file=sys.stderr, flush=True)


class Loaded(NamedTuple):
    """Everything generation needs, for a run or a model: unpack as `model, tokenizer, settings, chat, mode`."""

    model: Any
    tokenizer: Any
    settings: GenerateSection  # the recipe's `generate:` section with overrides applied, seed filled in
    chat: bool  # prompts go through the chat template
    mode: str  # "sft" (answer a formatted prompt) or "text" (continue the prompt)


# --- settings -----------------------------------------------------------------------------------------

def settings_with(base: GenerateSection | None = None, **options) -> GenerateSection:
    """`base` (default: the defaults) with every option that is not None applied and validated.
    An empty `stop` list keeps the base's stop strings."""
    base = base or GenerateSection()
    unknown = sorted(set(options) - set(GenerateSection.model_fields))
    if unknown:
        raise TypeError(f"unknown generation option(s): {', '.join(unknown)}")
    updates = {k: v for k, v in options.items() if v is not None and not (k == "stop" and not v)}
    if isinstance(updates.get("stop"), str):
        updates["stop"] = [updates["stop"]]
    from pydantic import ValidationError

    try:
        return GenerateSection.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid generation option: {problems}") from None


def _sampling(settings: GenerateSection) -> bool:
    return settings.temperature > 0


def _check_settings(settings: GenerateSection) -> None:
    if settings.num_return_sequences > 1 and not _sampling(settings):
        raise UserError(f"num_return_sequences is {settings.num_return_sequences}, but greedy decoding "
                        "gives one answer per prompt", hint="sample with a temperature > 0 (--temperature 0.8)")
    if settings.template is not None and "{prompt}" not in settings.template:
        raise UserError(f"generate.template {settings.template!r} has no {{prompt}} placeholder",
                        hint="e.g. 'Q: {prompt}\\nA:'")


# --- prompt formatting --------------------------------------------------------------------------------

def read_few_shot_file(path: str | Path) -> list[FewShotExample]:
    """Few-shot examples from a .jsonl file of {"prompt": ..., "response": ...} objects (relative
    paths: the current directory)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"few-shot file not found: {path}", hint="generate.few_shot is a list of "
                        "prompt/response pairs or the path of a .jsonl file of them (relative to the "
                        "current directory)")
    examples = []
    for number, row in _jsonl_rows(path):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise DataError(f"{path}, line {number}: a few-shot example needs string fields "
                            "'prompt' and 'response'")
        examples.append(FewShotExample(prompt=row["prompt"], response=row["response"]))
    if not examples:
        raise DataError(f"few-shot file {path} holds no examples")
    return examples


def few_shot_examples(settings: GenerateSection) -> list[FewShotExample]:
    if settings.few_shot is None:
        return []
    if isinstance(settings.few_shot, str):
        return read_few_shot_file(settings.few_shot)
    return list(settings.few_shot)


def format_generation_prompt(tokenizer, prompt: str, settings: GenerateSection, chat: bool,
                             mode: str = "sft", history: Sequence[tuple[str, str]] = (),
                             examples: Sequence[FewShotExample] | None = None) -> str:
    """The exact text the model continues for `prompt`: system prompt, few-shot examples and earlier
    turns (`history`, e.g. of an interactive chat) before it, in the model's format (see the module
    docstring). `examples` saves re-reading a few-shot file per prompt."""
    from ftcli.preprocess import format_prompt

    if examples is None:
        examples = few_shot_examples(settings)
    pairs = [(e.prompt, e.response) for e in examples] + list(history)
    if chat:
        if not pairs:  # the very function training used
            return format_prompt(tokenizer, prompt, settings.system_prompt, chat=True)
        messages = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
        for user, assistant in pairs:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def block(text: str) -> str:
        if settings.template is not None:
            return settings.template.replace("{prompt}", text)
        if mode == "sft":  # as preprocess.format_prompt(chat=False) formats training prompts
            return f"{text}\n"
        return text

    def answered(user: str, assistant: str) -> str:
        head = block(user)
        return f"{head}{'' if not head or head[-1].isspace() else ' '}{assistant}\n\n"

    prefix = f"{settings.system_prompt}\n\n" if settings.system_prompt else ""
    # With no examples and no template, an SFT prompt is exactly format_prompt(chat=False)'s.
    return prefix + "".join(answered(u, a) for u, a in pairs) + block(prompt)


# --- loading ------------------------------------------------------------------------------------------

def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ready(settings: GenerateSection, default_seed: int) -> GenerateSection:
    """Checked settings with the seed filled in and a few-shot file read (before any model loads)."""
    _check_settings(settings)
    update: dict = {}
    if settings.seed is None:
        update["seed"] = default_seed
    if isinstance(settings.few_shot, str):
        update["few_shot"] = read_few_shot_file(settings.few_shot)
    return settings.model_copy(update=update) if update else settings


def load_for_generation(target: str | Path | None = None, base: bool = False, model: str | None = None,
                        **options) -> Loaded:
    """Model, tokenizer, settings, chat flag and mode for generating from a run (`target`: run dir,
    recipe file, or None for the latest run here; `base`: the run's base model with the run's
    tokenizer and prompt format) or, with `model`, from any model directory or hub id (default
    settings; its chat template when it has one, plain continuation otherwise). `options` override
    the recipe's `generate:` section (None = keep)."""
    from ftcli.modeling import check_model_source, load_model, load_tokenizer, local_model
    from ftcli.preprocess import has_chat_template, uses_chat_template
    from ftcli.recipe import ModelSection, TrainSection

    if model is not None:
        if target is not None or base:
            raise UserError("--model generates with a model directly; it cannot be combined with "
                            "--run, --recipe or --base")
        source = ModelSection(name_or_path=str(model))
        check_model_source(source.name_or_path)
        settings = _ready(settings_with(GenerateSection(), **options), TrainSection().seed)
        tokenizer = load_tokenizer(source)
        weights = load_model("causal-lm", source)
        chat = has_chat_template(tokenizer)
        mode = "sft" if chat else "text"
    else:
        run_dir = runs.resolve_run(target)
        recipe = runs.load_run_recipe(run_dir)
        if recipe.task != "causal-lm":
            raise UserError(f"{run_dir} is a {recipe.task} run; generate needs a causal-lm run",
                            hint="use `ftcli eval` for classification runs")
        settings = _ready(settings_with(recipe.generate, **options), recipe.train.seed)
        tuned = local_model(run_dir / runs.MODEL_DIR)
        tokenizer = load_tokenizer(tuned)
        weights = load_model("causal-lm", recipe.model if base else tuned)
        mode = (runs.read_train_results(run_dir) or {}).get("mode", "sft")
        # Plain-text runs learned continuation; SFT runs learned to answer a formatted prompt.
        chat = mode == "sft" and uses_chat_template(tokenizer, recipe.data.template)
    if chat and settings.template is not None:
        log("generate.template is for plain prompts; this model uses its chat template instead")
    return Loaded(weights.to(_device()).eval(), tokenizer, settings, chat, mode)


# --- generation ---------------------------------------------------------------------------------------

def _cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the first stop string in `text`, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def apply_stop(text: str, stops: Sequence[str]) -> str:
    """`text` cut at the first stop string (which is left out)."""
    cut = _cut_at_stop(text, stops)
    return text if cut is None else text[:cut]


def _generate_kwargs(tokenizer, settings: GenerateSection) -> dict:
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

    input_ids, mask = _left_padded(id_lists, tokenizer.pad_token_id, model.device)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer,
                             **_generate_kwargs(tokenizer, settings))
    new = out[:, input_ids.shape[1]:]
    n = settings.num_return_sequences if _sampling(settings) else 1
    texts = [apply_stop(t, settings.stop).strip()
             for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return [texts[i * n:(i + 1) * n] for i in range(len(id_lists))], sum(_lengths(new, _stop_ids(model, tokenizer)))


def iter_generate(model, tokenizer, prompts: Iterable[str], settings: GenerateSection, chat: bool,
                  batch_size: int | None = None, mode: str = "sft", progress=None) -> Iterator[list[str]]:
    """Answers (a list of num_return_sequences strings) for each raw prompt, yielded in input order.
    Prompts are formatted as `settings` says, and batched by similar length within windows of
    16 batches (so results can be written out as they come)."""
    from ftcli.preprocess import prompt_token_ids

    _check_settings(settings)
    batch_size = batch_size or settings.batch_size
    examples = few_shot_examples(settings)
    if settings.seed is not None:
        from transformers import set_seed

        set_seed(settings.seed)
    prompts = list(prompts)
    window = batch_size * 16
    for start in range(0, len(prompts), window):
        ids = [prompt_token_ids(tokenizer, format_generation_prompt(tokenizer, p, settings, chat, mode,
                                                                    examples=examples))
               for p in prompts[start:start + window]]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        answers: list[list[str] | None] = [None] * len(ids)
        for b in range(0, len(order), batch_size):
            chunk = order[b:b + batch_size]
            texts, _ = generate_ids(model, tokenizer, [ids[i] for i in chunk], settings)
            for i, t in zip(chunk, texts):
                answers[i] = t
        if progress:
            progress(min(start + window, len(prompts)), len(prompts))
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
    from ftcli.preprocess import prompt_token_ids

    greedy = settings.model_copy(update={"temperature": 0.0, "num_return_sequences": 1})
    batch_size = batch_size or greedy.batch_size
    examples = few_shot_examples(greedy)
    ids = [prompt_token_ids(tokenizer, format_generation_prompt(tokenizer, p, greedy, chat, mode, examples=examples))
           for p in prompts]
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


# --- streaming and chat -------------------------------------------------------------------------------

def _make_streamer(tokenizer, stops: Sequence[str], out: IO[str]):
    from transformers import TextStreamer

    class StopStreamer(TextStreamer):
        """TextStreamer that prints to `out`, drops leading whitespace, and never prints a stop string
        or anything after it (it holds back text that could be the start of one)."""

        def __init__(self):
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.pending, self.started, self.stopped = "", False, False
            self.hold = max((len(s) for s in stops), default=1) - 1

        def _emit(self, text: str) -> None:
            if not self.started:
                text = text.lstrip()
                self.started = bool(text)
            if text:
                out.write(text)
                out.flush()

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if self.stopped:
                return
            self.pending += text
            cut = _cut_at_stop(self.pending, stops)
            if cut is not None:
                self._emit(self.pending[:cut].rstrip())
                self.pending, self.stopped = "", True
            elif stream_end:
                self._emit(self.pending.rstrip())
                self.pending = ""
            else:
                safe = max(len(self.pending) - self.hold, 0)
                self._emit(self.pending[:safe])
                self.pending = self.pending[safe:]
            if stream_end or self.stopped:
                out.write("\n")
                out.flush()

    return StopStreamer()


def _fit_history(tokenizer, model, prompt: str, settings, chat, mode, history: list) -> list[int]:
    """Token ids of the next chat prompt, dropping the oldest turns while it would not fit the model."""
    from ftcli.preprocess import prompt_token_ids

    limit = getattr(model.config, "max_position_embeddings", None)
    while True:
        ids = prompt_token_ids(tokenizer, format_generation_prompt(
            tokenizer, prompt, settings, chat, mode, history=history, examples=settings.few_shot or []))
        if not history or limit is None or len(ids) + settings.max_new_tokens <= limit:
            return ids
        history.pop(0)


def chat_loop(loaded: Loaded, stdin: IO[str] | None = None, stdout: IO[str] | None = None,
              stream: bool = False) -> list[tuple[str, str]]:
    """Read prompts from `stdin` line by line and answer each with the conversation so far before it
    (chat models: earlier user/assistant turns; plain models: earlier prompt/answer blocks), until
    `/exit` or end of input. `/reset` forgets the conversation. Answers go to `stdout`; the `> `
    prompt goes to stderr. Returns the conversation."""
    model, tokenizer, settings, chat, mode = loaded
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    settings = settings.model_copy(update={"num_return_sequences": 1})
    if settings.seed is not None:
        from transformers import set_seed

        set_seed(settings.seed)
    history: list[tuple[str, str]] = []
    log(f"interactive: type a message; {RESET_COMMAND} starts over, {EXIT_COMMAND} or end of input quits")
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = stdin.readline()
        if not line:
            break
        message = line.rstrip("\r\n")
        if message.strip() == EXIT_COMMAND:
            break
        if message.strip() == RESET_COMMAND:
            history.clear()
            continue
        if not message.strip():
            continue
        ids = _fit_history(tokenizer, model, message, settings, chat, mode, history)
        streamer = _make_streamer(tokenizer, settings.stop, stdout) if stream else None
        (answers,), _ = generate_ids(model, tokenizer, [ids], settings, streamer=streamer)
        if not stream:
            stdout.write(answers[0] + "\n")
            stdout.flush()
        history.append((message, answers[0]))
    return history


def print_answers(loaded: Loaded, prompt: str, out: IO[str] | None = None, stream: bool = False) -> list[str]:
    """Answer one prompt on `out` (stdout): the text, or the answers separated by `---` lines when
    num_return_sequences > 1; `stream` prints tokens as they are generated (one answer only)."""
    from ftcli.preprocess import prompt_token_ids

    model, tokenizer, settings, chat, mode = loaded
    out = out or sys.stdout
    if stream and settings.num_return_sequences > 1:
        raise UserError("--stream prints one answer; it does not work with several (-n)")
    if settings.seed is not None:
        from transformers import set_seed

        set_seed(settings.seed)
    ids = prompt_token_ids(tokenizer, format_generation_prompt(tokenizer, prompt, settings, chat, mode))
    streamer = _make_streamer(tokenizer, settings.stop, out) if stream else None
    (answers,), _ = generate_ids(model, tokenizer, [ids], settings, streamer=streamer)
    if not stream:
        out.write(f"\n{ANSWER_SEPARATOR}\n".join(answers) + "\n")
        out.flush()
    return answers


# --- prompt files -------------------------------------------------------------------------------------

def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object")
        yield number, row


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: .jsonl → the `prompt` field of each object; anything else → one prompt
    per line (blank lines skipped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        prompts = []
        for number, row in _jsonl_rows(path):
            if not isinstance(row.get("prompt"), str):
                raise DataError(f"{path}, line {number}: needs a string field 'prompt'")
            prompts.append(row["prompt"])
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise DataError(f"{path} holds no prompts",
                        hint="one prompt per line (.txt), or objects with a 'prompt' field (.jsonl)")
    return prompts


def write_results(loaded: Loaded, prompts: list[str], out: IO[str], batch_size: int | None = None) -> int:
    """One JSON line per prompt, in input order: {"prompt", "generated_text"} (a list of strings
    when num_return_sequences > 1). Returns the number of lines written."""
    model, tokenizer, settings, chat, mode = loaded
    several = settings.num_return_sequences > 1

    def progress(done: int, total: int) -> None:
        if total > done or total > (batch_size or settings.batch_size):
            log(f"generated {done}/{total}")

    written = 0
    for prompt, answers in zip(prompts, iter_generate(model, tokenizer, prompts, settings, chat,
                                                      batch_size, mode, progress)):
        out.write(json.dumps({"prompt": prompt, "generated_text": answers if several else answers[0]},
                             ensure_ascii=False) + "\n")
        written += 1
    out.flush()
    return written


# --- the public function ------------------------------------------------------------------------------

def generate(prompt: str, target: str | Path | None = None, base: bool = False, model: str | None = None,
             **options) -> str:
    """Generate a reply to `prompt` with a run's tuned model (`base`: its base model; `model`: any
    model, no run). Unset options (max_new_tokens, temperature, top_p, top_k, repetition_penalty,
    num_return_sequences, stop, seed, system_prompt, template, few_shot) come from the run recipe's
    `generate:` section. Returns the first answer; `generate_all` returns every answer."""
    return generate_all([prompt], target, base=base, model=model, **options)[0][0]


def generate_all(prompts: list[str], target: str | Path | None = None, base: bool = False,
                 model: str | None = None, **options) -> list[list[str]]:
    """Every answer (num_return_sequences of them) for each prompt, batched."""
    loaded = load_for_generation(target, base=base, model=model, **options)
    m, tokenizer, settings, chat, mode = loaded
    return list(iter_generate(m, tokenizer, prompts, settings, chat, settings.batch_size, mode))
