"""Progress messages for the user: one line each, `[ftcli] ...`, on stderr.

stdout stays free for results (`generate`, `eval --json`). With several processes only rank 0
speaks: the others would repeat each line.
"""

from __future__ import annotations

import sys

from ftcli import distributed


def log(message: str) -> None:
    if distributed.is_main():
        print(f"[ftcli] {message}", file=sys.stderr, flush=True)
