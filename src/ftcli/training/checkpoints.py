"""Checkpoints we can trust: a completion marker written last, and the newest complete one to resume
from.

transformers picks the newest `checkpoint-N` on resume even when it is half-written (a kill during
the save), and then fails or silently loads garbage. ftcli writes `ftcli-complete.json` into a
checkpoint only after Trainer has written every file, and resumes only from marked checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ftcli.io import write_json

MARKER = "ftcli-complete.json"


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(run_dir: Path) -> list[Path]:
    """All `checkpoint-N` folders of a run, oldest step first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def mark_complete(checkpoint: Path, step: int) -> None:
    """Write the marker atomically and flushed to disk, after every other file is on disk."""
    files = sorted(p.name for p in checkpoint.iterdir() if not p.name.startswith("."))
    write_json(checkpoint / MARKER, {"global_step": step, "files": files}, sync=True)


def is_complete(checkpoint: Path) -> bool:
    try:
        marker = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all((checkpoint / name).exists() for name in marker.get("files", []))


def last_complete(run_dir: Path, warn=print) -> Path | None:
    """The newest complete checkpoint. Incomplete ones are reported and removed: they can never be
    resumed from, and left in place they would count against save_total_limit."""
    best = None
    for checkpoint in checkpoints(run_dir):
        if is_complete(checkpoint):
            best = checkpoint
        else:
            warn(f"skipping {checkpoint.name}: incomplete (interrupted while saving); removing it")
            shutil.rmtree(checkpoint, ignore_errors=True)
    return best


def unmark(checkpoint: Path) -> None:
    """Withdraw a checkpoint from resuming (its weights turned out to be bad)."""
    (checkpoint / MARKER).unlink(missing_ok=True)
