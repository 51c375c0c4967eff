"""ftcli's exception types. Each carries the process exit code the CLI maps it to.

The library raises these and never exits; the CLI (`cli.py`) renders them as short messages.
Anything that is not one of these is an internal error (exit 1) and a bug worth reporting.
"""

from __future__ import annotations

import difflib


def suggest(word: str, choices) -> str:
    """" — did you mean X?" for the closest of `choices` (or one `word` begins), else ""."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    close = close or [c for c in choices if len(word) >= 3 and c.startswith(word)][:1]
    return f" — did you mean {close[0]}?" if close else ""


def first_line(exc: BaseException) -> str:
    """An exception's first line (library errors run to pages), or its type when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FtcliError(Exception):
    """Base class: a failure we understand and can explain in one message."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


class UserError(FtcliError):
    """Bad recipe, data, arguments or model path: the user can fix it (exit 2)."""

    exit_code = 2


class RecipeError(UserError):
    """The recipe is invalid. `problems` lists every problem as `dotted.path: message`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        body = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} {noun} in recipe:\n{body}")


class DataError(UserError):
    """The data cannot be used as the recipe describes."""


class ModelError(UserError):
    """The model (or tokenizer) cannot be found or loaded."""


class TrainingFailed(FtcliError):
    """Training ran but failed (e.g. non-finite loss) (exit 3)."""

    exit_code = 3


class Interrupted(FtcliError):
    """Stopped by Ctrl-C or SIGTERM after saving a resumable checkpoint (exit 130)."""

    exit_code = 130
