"""The `ftcli` command line: thin commands over the library, one module per group of commands, all
registered on one Typer app (`base.app`). No heavy imports at module level: `ftcli --help` must stay fast.
"""

from __future__ import annotations

import os
import warnings

# Each module registers its commands on the app; `ftcli --help` lists them in this order.
from ftcli.cli import training, using, recipes, sweep, report, attention  # noqa: F401  isort: skip
from ftcli.cli.base import _debug, app

__all__ = ["app", "main"]


def main() -> None:
    if not _debug():
        # Our own messages say what happened; library notices (load reports, deprecations) are
        # noise to a CLI user. FTCLI_DEBUG=1 shows everything.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-file load bars; training keeps its bar
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    app(prog_name="ftcli")
