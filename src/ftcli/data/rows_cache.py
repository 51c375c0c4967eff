"""A run's loaded rows cached by the bytes of their files, so a second run of the same recipe skips
reading, parsing and cleaning them, and names its tokenized-data entries without hashing every row.

The key is the content of every local data file, the recipe's data settings, the seed (held-out
split, mixing) and the code that reads and cleans rows. Hub datasets and streamed data are not
cached here (their bytes are not ours to hash cheaply); they take the plain path. Entries are JSON:
loading one can never run code. Rows that JSON cannot hold exactly (e.g. parquet bytes) are not cached.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ftcli.data.cache_store import cache_dir, code_version
from ftcli.data.readers import data_files
from ftcli.data.sources import as_sources
from ftcli.data.splits import Splits, load_splits
from ftcli.io import write_atomically
from ftcli.recipe import Recipe

# The modules whose behaviour decides the rows of a split.
_CODE = ("data/splits.py", "data/readers.py", "data/sources.py", "data/row_formats.py", "data/chats.py",
         "data/cleaning.py", "data/pairs.py")


def _local_files(recipe: Recipe) -> list[Path] | None:
    files = []
    for data in (recipe.data.train, recipe.data.eval):
        for source in as_sources(data) if data else []:
            if source.name:  # a hub dataset
                return None
            for name in (source.path, source.source, source.target):
                if name is not None:
                    path = Path(name).expanduser()
                    if not path.exists():
                        return None  # the plain path reports it
                    files += data_files(path)
    return files


def rows_key(recipe: Recipe) -> str | None:
    """A key for the rows `load_splits(recipe)` returns, or None when they cannot be cached."""
    d = recipe.data
    if d.streaming or not d.cache:
        return None
    files = _local_files(recipe)
    if files is None:
        return None

    digest = hashlib.sha256(code_version(_CODE).encode())
    settings = {"task": recipe.task, "seed": recipe.train.seed, "data": d.model_dump(mode="json")}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(str(path.resolve()).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def load_splits_cached(recipe: Recipe, log=None):
    """`load_splits(recipe)`, from the cache when the files and settings are unchanged. The returned
    Splits carries the key as `fingerprint`, which the tokenized-data cache uses instead of the rows."""
    key = rows_key(recipe)
    if key is None:
        return load_splits(recipe)
    path = cache_dir() / f"rows-{key}.json"
    if path.is_file():
        try:
            splits = Splits(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:  # a damaged entry is rebuilt, never trusted
            if log:
                log(f"ignoring a damaged rows cache entry {path.name} ({type(exc).__name__})")
        else:
            splits.fingerprint = key
            if log:
                log(f"rows unchanged since an earlier run: reused them as read and cleaned then ({path})")
            return splits
    splits = load_splits(recipe)
    try:
        text = json.dumps(asdict(splits), ensure_ascii=False)
    except (TypeError, ValueError):  # values JSON cannot hold exactly: no entry
        return splits
    if json.loads(text) != asdict(splits):  # e.g. tuples or non-string keys would come back changed
        return splits
    try:
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError:
        return splits  # a read-only or full cache disk must not stop training
    splits.fingerprint = key
    return splits
