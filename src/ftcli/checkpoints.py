"""Checkpoints we can trust: a completion marker written last, and the choice of what to resume from.

transformers picks the newest `checkpoint-N` on resume even when it is half-written (a kill during
the save), and then fails or silently loads garbage. ftcli writes `ftcli-complete.json` into a
checkpoint only after Trainer has written every file, and resumes only from marked checkpoints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

MARKER = "ftcli-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(run_dir: Path) -> list[Path]:
    """All `checkpoint-N` folders of a run, oldest step first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def mark_complete(checkpoint: Path, step: int) -> None:
    """Write the marker atomically (temp file + rename), after every other file is on disk."""
    tmp = checkpoint / f".{MARKER}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"global_step": step, "files": sorted(p.name for p in checkpoint.iterdir()
                                                        if not p.name.startswith("."))}, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(checkpoint / MARKER)


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


# Recipe keys whose change makes an old checkpoint meaningless for the new run. Anything else
# (logging, saving, eval, generate) is allowed on resume and reported.
_BLOCKING_PREFIXES = ("task", "model.", "data.", "lora")  # "lora" also covers LoRA on/off
_BLOCKING_TRAIN_KEYS = {"epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                        "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "seed",
                        "gradient_checkpointing", "on_nonfinite_loss", "group_by_length"}  # the batch order


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def recipe_changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """Compare two resolved recipes (as dicts): (keys that forbid resuming, harmless changed keys)."""
    before, after = _flatten(old), _flatten(new)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    blocking = [k for k in changed if k.startswith(_BLOCKING_PREFIXES)
                or (k.startswith("train.") and k.split(".", 1)[1] in _BLOCKING_TRAIN_KEYS)]
    return blocking, [k for k in changed if k not in blocking]
