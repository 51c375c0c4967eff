"""Tokenized data, cached between runs: a second run of the same recipe does no re-tokenization.

The cache key is explicit rather than inferred: the rows themselves, the tokenizer (its whole
serialised vocabulary and merges, special tokens and chat template), every recipe setting that shapes
an example, and the source of the code that tokenizes. Anything that could change the token ids is in
the key, so a new tokenizer or template can never be served stale examples (the failure behind
Axolotl #1265, where a changed tokenizer kept its old cache).

Entries are plain numpy arrays (.npz, loaded with allow_pickle=False: a cache file can never run code),
written to a temporary name and renamed, so a crash never leaves a half-written entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from ftcli.recipe import Recipe

# Modules whose code decides what tokenization produces: editing them invalidates every entry.
_CODE = ("preprocess.py", "templates.py", "prompting.py", "masking.py")


def cache_dir() -> Path:
    """FTCLI_CACHE_DIR, else $XDG_CACHE_HOME/ftcli, else ~/.cache/ftcli; entries go in prepared/."""
    root = os.environ.get("FTCLI_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                     Path.home() / ".cache") / "ftcli"
    return Path(root).expanduser() / "prepared"


def code_version(modules: tuple[str, ...] = _CODE) -> str:
    """A hash of the ftcli modules whose behaviour decides a cached result."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in modules:
        path = here / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _backend_text(backend) -> str:
    """The fast tokenizer serialised without its truncation/padding settings: calling a tokenizer with
    truncation=/padding= stores those in it, per call, and they must not change the key."""
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return backend.to_str()  # hashed as text: parsing 50k-entry vocabularies costs ~0.4 s
    finally:
        if truncation:
            backend.enable_truncation(**truncation)
        if padding:
            backend.enable_padding(**padding)


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything in a tokenizer that decides token ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    model = _backend_text(backend) if backend is not None else sorted(tokenizer.get_vocab().items())
    parts = {
        "class": type(tokenizer).__name__,
        "model": hashlib.sha256(str(model).encode()).hexdigest(),
        "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": getattr(tokenizer, "chat_template", None),
        "padding_side": getattr(tokenizer, "padding_side", None),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _settings(recipe: Recipe) -> dict:
    """The recipe settings that shape an example (data paths are left out: the rows themselves count)."""
    data = recipe.data.model_dump(mode="json", exclude={"train", "eval", "eval_fraction", "max_train_samples",
                                                       "streaming", "cache"})
    return {"task": recipe.task, "data": data, "system_prompt": recipe.generate.system_prompt}


def cache_key(rows: list[dict], tokenizer, recipe: Recipe, rows_id: str | None = None, **extra) -> str:
    """`rows_id` names the rows when something already keyed them (`rows_cache`): no need to hash them."""
    if rows_id is None:
        digest = hashlib.sha256()
        for row in rows:  # streamed into the hash: no second copy of a large dataset in memory
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            digest.update(b"\n")
        rows_id = digest.hexdigest()
    header = {"rows": rows_id, "n": len(rows), "tokenizer": tokenizer_fingerprint(tokenizer),
              "settings": _settings(recipe), "code": code_version(), "extra": extra}
    return hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save(path: Path, tokenized) -> None:
    import numpy as np

    examples = tokenized.examples
    arrays = {"lengths": np.array([len(e["input_ids"]) for e in examples], dtype=np.int64),
              "input_ids": np.array([t for e in examples for t in e["input_ids"]], dtype=np.int64)}
    if examples and isinstance(examples[0]["labels"], list):
        arrays["label_lengths"] = np.array([len(e["labels"]) for e in examples], dtype=np.int64)
        arrays["labels"] = np.array([t for e in examples for t in e["labels"]], dtype=np.int64)
    else:
        arrays["class_labels"] = np.array([e["labels"] for e in examples], dtype=np.int64)
    arrays["counts"] = np.array([tokenized.truncated, tokenized.dropped], dtype=np.int64)
    write_atomically(path, lambda handle: np.savez(handle, **arrays))


def write_atomically(path: Path, write) -> None:
    """`write(binary file)` into a temporary file renamed onto `path`: another run reading the cache
    meanwhile sees the whole entry or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        write(handle)
    os.replace(tmp, path)


def _split(flat, lengths) -> list[list[int]]:
    import numpy as np

    return [chunk.tolist() for chunk in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []


def _load(path: Path):
    import numpy as np

    from ftcli.preprocess import Tokenized

    with np.load(path, allow_pickle=False) as saved:
        inputs = _split(saved["input_ids"], saved["lengths"])
        if "labels" in saved:
            labels = _split(saved["labels"], saved["label_lengths"])
        else:
            labels = saved["class_labels"].tolist()
        truncated, dropped = saved["counts"].tolist()
    examples = [{"input_ids": ids, "labels": label} for ids, label in zip(inputs, labels)]
    return Tokenized(examples, truncated, dropped)


def cached_tokenize(tokenize: Callable, rows: list[dict], tokenizer, recipe: Recipe, log=None,
                    rows_id: str | None = None, **extra):
    """`tokenize()` through the cache: the stored result when the key matches, else tokenize and store.
    `extra` holds what else the result depends on (mode, format, label2id) and goes into the key."""
    if not recipe.data.cache or not rows:
        return tokenize()
    path = cache_dir() / f"{cache_key(rows, tokenizer, recipe, rows_id, **extra)}.npz"
    if path.is_file():
        try:
            found = _load(path)
        except Exception as exc:  # a damaged entry is rebuilt, never trusted
            if log:
                log(f"ignoring a damaged preprocessing cache entry {path.name} ({type(exc).__name__})")
        else:
            if log:
                log(f"reused {len(found.examples)} tokenized examples from the cache ({path})")
            return found
    result = tokenize()
    try:
        _save(path, result)
    except OSError as exc:  # a read-only or full cache disk must not stop training
        if log:
            log(f"could not write the preprocessing cache ({exc.strerror}); continuing without it")
    return result


def prepare_splits(recipe: Recipe, splits, tokenizer, label2id: dict | None, log=None):
    """Tokenized (train, eval) examples of a run, through the cache; with data.streaming the training
    examples are a stream, read and tokenized as training consumes them. Eval rows are prepared with
    the training rows, so a bad label or field fails now, not after hours of training."""
    from ftcli.data import describe_source
    from ftcli.errors import DataError
    from ftcli.preprocess import tokenize

    d = recipe.data
    train_source = describe_source(d.train)
    eval_source = describe_source(d.eval) if d.eval else "eval split"

    def tokenize_rows(rows, source):
        return tokenize(splits.mode, rows, tokenizer, recipe, label2id, source, format=splits.format)

    def prepared(rows, source, split):
        rows_id = f"{splits.fingerprint}/{split}" if getattr(splits, "fingerprint", None) else None
        return cached_tokenize(lambda: tokenize_rows(rows, source), rows, tokenizer, recipe, log, rows_id,
                               mode=splits.mode, format=splits.format, label2id=label2id)

    if d.streaming:
        from ftcli.data import stream_rows
        from ftcli.streaming import TokenizedStream

        counts = splits.cleaning.setdefault("train", {})  # filled in as the stream goes by
        train_set = TokenizedStream(lambda: stream_rows(recipe, counts),
                                    lambda rows: tokenize_rows(rows, train_source), train_source)
    else:
        train_set = prepared(splits.train, train_source, "train")
        if not train_set.examples:
            raise DataError(f"{train_source}: no usable training examples after tokenization "
                            f"({train_set.dropped} responses were cut away by max_length={d.max_length})")
    eval_set = prepared(splits.eval, eval_source, "eval")
    if log and (train_set.truncated or train_set.dropped):
        log(f"{train_set.truncated} examples truncated to max_length={d.max_length}"
            + (f", {train_set.dropped} dropped (response cut away)" if train_set.dropped else ""))
    return train_set, eval_set
