"""Files that are complete or absent, and telling a local path from a Hub id.

Every write that another process (or a resumed run) may read goes through here: a temporary sibling,
flushed, then renamed into place, so a crash never leaves a half-written file or folder that looks
valid.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

# Suffixes that make a name a file rather than a Hub id: data formats, their gzip, recipes, GGUF.
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".gz", ".yaml", ".yml", ".gguf")


def is_local_path(value: str) -> bool:
    """Whether a name the user wrote means a local file or folder rather than a Hugging Face Hub id: it
    exists, is written as a path (./x, /x, ~/x), ends in a file suffix (so a missing `train.jsonl` is
    "not found", not a failed Hub lookup), or its first folder exists here (`models/tiny-lama` with a
    `models/` folder is a typo, not a Hub repo). `Qwen/Qwen2.5-7B` stays a Hub id."""
    path = Path(value).expanduser()
    try:
        if path.exists():
            return True
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False
    return (value.startswith((".", "/", "~")) or path.suffix.lower() in FILE_SUFFIXES
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def write_atomically(path: str | Path, write: Callable, sync: bool = False) -> None:
    """`write(binary file)` into a temporary sibling renamed onto `path`: a reader sees the whole file
    or none of it. `sync` also flushes it to disk first (markers that must survive a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str, sync: bool = False) -> None:
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")), sync)


def write_json(path: str | Path, data, sync: bool = False) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", sync)


def write_dir(save: Callable[[Path], None], final_dir: str | Path) -> None:
    """Write a directory through `save(tmp_dir)` and rename it into place, so `final_dir` is either
    complete or absent: never half-written if the process dies."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)



