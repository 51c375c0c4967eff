"""Progress messages for the user: one line each, `[ftcli] ...`, on stderr.

stdout stays free for results (`generate`, `eval --json`). With several processes only rank 0
speaks: the others would repeat each line.
"""

from __future__ import annotations

import sys

from ftcli.ranks import is_main


def log(message: str) -> None:
    if is_main():
        print(f"[ftcli] {message}", file=sys.stderr, flush=True)
