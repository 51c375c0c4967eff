"""The one Typer app every command module registers on, and `guarded`: our errors turned into exit codes.

Exit codes: 0 ok; 2 user error (recipe, data, arguments, model path); 1 internal error;
3 training failed; 130 interrupted. FTCLI_DEBUG=1 shows tracebacks.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated

import typer


app = typer.Typer(
    name="ftcli",
    help="Fine-tune Hugging Face models from one YAML recipe: finetune → eval → generate.",
    # --install-completion / --show-completion: Typer's shell completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help text: rendering it with rich costs ~0.15 s of imports on every `--help`.
    rich_markup_mode=None,
)

def _version(value: bool) -> None:
    if value:
        from ftcli import __version__

        typer.echo(f"ftcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False) -> None:
    """Fine-tune Hugging Face models from one YAML recipe: finetune → eval → generate."""


def _debug() -> bool:
    return os.environ.get("FTCLI_DEBUG", "") not in ("", "0")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))  # set by torchrun / accelerate launch


def _fail(message: str, code: int, reported: bool = False) -> None:
    # Under a launcher, an error rank 0 raised reaches every rank; rank 0 has said it already.
    if not reported:
        where = f"[rank {_rank()}] " if _rank() else ""
        typer.echo(f"{where}{'stopped' if code == 130 else 'error'}: {message}", err=True)
    raise typer.Exit(code)


def guarded(command):
    """Run a command, mapping our errors to short messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from ftcli.errors import FtcliError

        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except FtcliError as exc:
            if _debug():
                raise
            _fail(exc.render(), exc.exit_code, getattr(exc, "reported_by_rank0", False))
        except KeyboardInterrupt:
            typer.echo("\ninterrupted", err=True)
            raise typer.Exit(130)
        except Exception as exc:  # a bug: say so briefly, keep the traceback one variable away
            if _debug():
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc}\n"
                  "(set FTCLI_DEBUG=1 for the traceback, and please report it)", 1)

    return wrapper
