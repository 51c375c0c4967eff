"""Checkpoints we can trust: ours marked from before their first file to after their last, and the
newest complete one to resume from.

transformers picks the newest `checkpoint-N` on resume even when it is half-written (a kill during
the save), and then fails or silently loads garbage. So ftcli claims `checkpoint-N` with
`ftcli-saving.json` before Trainer writes a file into it, replaces that with `ftcli-complete.json`
once every file is on disk, and resumes only from complete checkpoints. A checkpoint with neither
marker was not written by ftcli (a plain Trainer run, another tool): never resumed from, never removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ftcli.io import write_json
from ftcli.runs import CHECKPOINT_COMPLETE, CHECKPOINT_SAVING, checkpoint_dirs, is_our_checkpoint

MARKER = CHECKPOINT_COMPLETE
IN_PROGRESS = CHECKPOINT_SAVING


checkpoints = checkpoint_dirs  # all `checkpoint-N` folders of a run, oldest step first (runs.py)


def foreign(run_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders ftcli did not write (neither marker)."""
    return [p for p in checkpoints(run_dir) if not is_our_checkpoint(p)]


def claim(checkpoint: Path, step: int) -> None:
    """Mark `checkpoint` as ours and in progress, before Trainer writes into it. Renamed into place with
    the marker already inside, so there is no moment at which `checkpoint-N` exists without it."""
    tmp = checkpoint.with_name(f".{checkpoint.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_json(tmp / IN_PROGRESS, {"global_step": step}, sync=True)
    try:
        tmp.rename(checkpoint)
        return
    except OSError:  # it exists already (saved twice at one step): mark it in place
        shutil.rmtree(tmp, ignore_errors=True)
    write_json(checkpoint / IN_PROGRESS, {"global_step": step}, sync=True)
    # Its files are about to be rewritten: until they all are, it is not complete.
    (checkpoint / MARKER).unlink(missing_ok=True)


def mark_complete(checkpoint: Path, step: int) -> None:
    """Write the completion marker atomically and flushed to disk, after every other file is on disk;
    only then withdraw the in-progress one (a kill in between leaves both: complete wins)."""
    files = sorted(p.name for p in checkpoint.iterdir() if not p.name.startswith(".") and p.name != IN_PROGRESS)
    write_json(checkpoint / MARKER, {"global_step": step, "files": files}, sync=True)
    (checkpoint / IN_PROGRESS).unlink(missing_ok=True)


def is_complete(checkpoint: Path) -> bool:
    try:
        marker = json.loads((checkpoint / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all((checkpoint / name).exists() for name in marker.get("files", []))


def last_complete(run_dir: Path, warn=print) -> Path | None:
    """The newest complete checkpoint. Our incomplete ones are reported and removed: they can never be
    resumed from, and left in place they would count against save_total_limit. Checkpoints ftcli did
    not write are skipped and left alone."""
    best = None
    for checkpoint in checkpoints(run_dir):
        if is_complete(checkpoint):
            best = checkpoint
        elif is_our_checkpoint(checkpoint):
            warn(f"skipping {checkpoint.name}: incomplete (interrupted while saving); removing it")
            shutil.rmtree(checkpoint, ignore_errors=True)
        else:
            warn(f"skipping {checkpoint.name}: not written by ftcli (no {MARKER}); leaving it alone")
    return best


def unmark(checkpoint: Path) -> None:
    """Withdraw a checkpoint from resuming (its weights turned out to be bad); it stays marked as ours,
    so the next resume removes it."""
    write_json(checkpoint / IN_PROGRESS, {"withdrawn": True}, sync=True)
    (checkpoint / MARKER).unlink(missing_ok=True)
