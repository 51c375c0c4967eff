"""`ftcli generate`'s input and output: prompts read from a file, answers printed (or streamed token
by token) for one prompt, an interactive chat on stdin/stdout, and JSON-lines results for a file.

Several answers per prompt (`num_return_sequences` > 1): `ftcli generate PROMPT` prints the answers
separated by a line `---`; `--file` writes one JSON line per prompt whose `generated_text` is then a
list of strings (a string when there is one answer).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ftcli.data.readers import iter_jsonl
from ftcli.errors import DataError, UserError
from ftcli.generation.batched import cut_at_stop, generate_ids, iter_generate, prompt_ids
from ftcli.generation.load import Loaded, log
from ftcli.progress import Progress

ANSWER_SEPARATOR = "---"  # between the answers to one prompt on stdout (num_return_sequences > 1)
EXIT_COMMAND = "/exit"
RESET_COMMAND = "/reset"


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
            cut = cut_at_stop(self.pending, stops)
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
    limit = getattr(model.config, "max_position_embeddings", None)
    while True:
        ids = prompt_ids(tokenizer, prompt, settings, chat, mode, history=history,
                         examples=settings.few_shot or [])
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
    model, tokenizer, settings, chat, mode = loaded
    out = out or sys.stdout
    if stream and settings.num_return_sequences > 1:
        raise UserError("--stream prints one answer; it does not work with several (-n)")
    if settings.seed is not None:
        from transformers import set_seed

        set_seed(settings.seed)
    ids = prompt_ids(tokenizer, prompt, settings, chat, mode)
    streamer = _make_streamer(tokenizer, settings.stop, out) if stream else None
    (answers,), _ = generate_ids(model, tokenizer, [ids], settings, streamer=streamer)
    if not stream:
        out.write(f"\n{ANSWER_SEPARATOR}\n".join(answers) + "\n")
        out.flush()
    return answers


# --- prompt files -------------------------------------------------------------------------------------

def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: .jsonl → the `prompt` field of each object; anything else → one prompt
    per line (blank lines skipped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        prompts = []
        for number, row in iter_jsonl(path):
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

    written = 0
    with Progress("generated", len(prompts)) as progress:  # on stderr: `out` may be stdout
        for prompt, answers in zip(prompts, iter_generate(model, tokenizer, prompts, settings, chat, batch_size,
                                                          mode, lambda done, total: progress.update(done))):
            out.write(json.dumps({"prompt": prompt, "generated_text": answers if several else answers[0]},
                                 ensure_ascii=False) + "\n")
            written += 1
    out.flush()
    return written
