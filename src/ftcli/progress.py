"""What the user sees while ftcli works, all on stderr: one-line messages (`log`, `[ftcli] ...`) and
the progress of long tasks (`Progress`): a live bar on a terminal, a readable line now and then
when stderr is a file or a CI log, nothing at all with FTCLI_PROGRESS=off.

stdout stays free for results (`generate`, `eval --json`). With several processes only rank 0
speaks: the others would repeat each line.
"""

from __future__ import annotations

import math
import os
import sys
import time

from ftcli.errors import UserError
from ftcli.ranks import is_main

MODE_VARIABLE = "FTCLI_PROGRESS"
MODES = ("bar", "lines", "off")
BAR_FORMAT = "|{bar:24}| {desc}"  # the text is ours (the same as a line's); tqdm draws only the bar

_open_bars: list = []  # live bars: a message printed meanwhile must not tear them


def log(message: str) -> None:
    if not is_main():
        return
    if _open_bars:
        _open_bars[-1].write(f"[ftcli] {message}", file=sys.stderr)  # above the bars, which redraw below
    else:
        print(f"[ftcli] {message}", file=sys.stderr, flush=True)


def progress_mode(stream=None) -> str:
    """How progress shows: "bar" when `stream` (stderr) is a terminal, else "lines";
    FTCLI_PROGRESS=bar|lines|off overrides. Processes other than rank 0 show nothing ("off")."""
    if not is_main():
        return "off"
    forced = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise UserError(f"{MODE_VARIABLE}={forced!r} is not a progress mode",
                            hint=f"set it to one of: {', '.join(MODES)} (or unset it: a bar on a terminal, "
                                 "lines otherwise)")
        return forced
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return "bar" if isatty is not None and isatty() else "lines"
    except ValueError:  # a closed stream
        return "lines"


def duration(seconds: float) -> str:
    """45s, 1m40s, 2h05m: short enough for a progress line."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def number(value: float) -> str:
    """A metric at a glance: 5.41, 4.40, 0.0312, 134.3, 2.0e-05."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) < 1e-3:
        return f"{value:.1e}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


class Progress:
    """Progress through `total` steps of one task, shown as `LABEL DONE/TOTAL  FIELDS  eta ...`.

    mode "bar": a live tqdm bar with that text, redrawn as `update` is called. "lines": the text
    as a log line every `every` steps (0: about ten lines in all) and at the end; every=None prints
    only when `say` is called. "off": nothing. Use it as a context manager, or call `close`."""

    def __init__(self, label: str, total: int, *, every: int | None = 0, initial: int = 0,
                 leave: bool = False, mode: str | None = None):
        self.label, self.total, self.initial, self.done = label, max(int(total), 0), initial, initial
        self.mode = mode or progress_mode()
        self.every = max(math.ceil(self.total / 10), 1) if every == 0 else every
        self._next_line = self._after(initial)
        self.fields = ""
        self.started = time.monotonic()
        self.bar = self._open_bar(leave) if self.mode == "bar" else None

    def _open_bar(self, leave: bool):
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.initial, file=sys.stderr, leave=leave, dynamic_ncols=True,
                   bar_format=BAR_FORMAT, desc=self.text(), mininterval=0.2)
        _open_bars.append(bar)
        return bar

    def _after(self, done: int) -> int | None:
        return None if self.every is None else (done // self.every + 1) * self.every

    def eta(self) -> str:
        """Time left at the pace so far (every pause included: evals, checkpoints)."""
        if self.done >= self.total:
            return f"in {duration(time.monotonic() - self.started)}"
        if self.done <= self.initial:
            return ""
        pace = (time.monotonic() - self.started) / (self.done - self.initial)
        return f"eta {duration(pace * (self.total - self.done))}"

    def text(self) -> str:
        parts = [f"{self.label} {self.done}/{self.total}", self.fields, self.eta()]
        return "  ".join(p for p in parts if p)

    def update(self, done: int, fields: str | None = None) -> None:
        """`done` steps of `total` are done now; `fields`, when given, replace the text after the count."""
        before, self.done = self.done, min(max(done, self.done), self.total) if self.total else done
        if fields is not None:
            self.fields = fields
        if self.bar is not None:
            self.bar.set_description_str(self.text(), refresh=False)
            self.bar.update(self.done - self.bar.n)  # redraws at most every mininterval
        elif self.mode == "lines" and self._next_line is not None and self.done > before and (
                self.done >= self._next_line or self.done >= self.total):  # the end is always shown
            self._line()

    def advance(self, steps: int = 1) -> None:
        self.update(self.done + steps)

    def say(self, fields: str | None = None) -> None:
        """Show `fields` now: a line in lines mode, the bar's text in bar mode."""
        if fields is not None:
            self.fields = fields
        if self.bar is not None:
            self.bar.set_description_str(self.text())
        elif self.mode == "lines":
            self._line()

    def write(self, text: str) -> None:
        """A line of its own (an eval result): above the bar, or a log line."""
        if self.mode == "off":
            return
        log(text)

    def _line(self) -> None:
        self._next_line = self._after(self.done)
        log(self.text())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_description_str(self.text(), refresh=False)
            self.bar.close()
            _open_bars.remove(self.bar)
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
