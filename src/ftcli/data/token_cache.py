"""Tokenized data, cached between runs: a second run of the same recipe does no re-tokenization.

The cache key is explicit rather than inferred: the rows themselves, the tokenizer (its whole
serialised vocabulary and merges, special tokens and chat template), every recipe setting that shapes
an example, the source of the code that tokenizes, and the versions of the libraries that render and
tokenize (tokenizers, transformers, jinja2). Anything that could change the token ids is in the key, so
a new tokenizer or template can never be served stale examples (the failure behind Axolotl #1265, where
a changed tokenizer kept its old cache).

Entries are plain numpy arrays (.npz, loaded with allow_pickle=False: a cache file can never run code),
written to a temporary name and renamed, so a crash never leaves a half-written entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from ftcli.data.cache_store import cache_dir, code_version
from ftcli.data.tokenize import Tokenized
from ftcli.io import write_atomically
from ftcli.recipe import Recipe
from ftcli.versions import package_versions

# Modules whose code decides what tokenization produces: editing them invalidates every entry.
_CODE = ("data/tokenize.py", "data/tokenize_pairs.py", "data/pairs.py", "data/templates.py", "data/chats.py",
         "data/chat_checks.py", "data/generation_prompts.py", "data/collators.py")
# Libraries that produce the token ids: the tokenizers backend splits text, transformers drives it
# (special tokens, truncation, chat templates) and jinja2 renders the templates. An upgrade of any
# may change the ids of the same rows, so it invalidates every entry.
_LIBRARIES = ("tokenizers", "transformers", "jinja2")


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
              "settings": _settings(recipe), "code": code_version(_CODE),
              "libraries": package_versions(_LIBRARIES), "extra": extra}
    return hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save(path: Path, tokenized) -> None:
    """Each field of the examples as one array: a list-valued field (input_ids, labels, prompt_ids,
    ...) flattened beside its lengths, an int-valued one (a class label) as is."""
    import numpy as np

    examples = tokenized.examples
    arrays = {"counts": np.array([tokenized.truncated, tokenized.dropped], dtype=np.int64)}
    for key, value in (examples[0] if examples else {}).items():
        if isinstance(value, list):
            arrays[f"lengths__{key}"] = np.array([len(e[key]) for e in examples], dtype=np.int64)
            arrays[f"list__{key}"] = np.array([t for e in examples for t in e[key]], dtype=np.int64)
        else:
            arrays[f"int__{key}"] = np.array([e[key] for e in examples], dtype=np.int64)
    write_atomically(path, lambda handle: np.savez(handle, **arrays))


def _split(flat, lengths) -> list[list[int]]:
    import numpy as np

    return [chunk.tolist() for chunk in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []


def _load(path: Path):
    import numpy as np

    columns = {}
    with np.load(path, allow_pickle=False) as saved:
        for name in saved.files:
            kind, _, key = name.partition("__")
            if kind == "list":
                columns[key] = _split(saved[name], saved[f"lengths__{key}"])
            elif kind == "int":
                columns[key] = saved[name].tolist()
        truncated, dropped = saved["counts"].tolist()
    n = len(next(iter(columns.values()))) if columns else 0
    return Tokenized([{key: values[i] for key, values in columns.items()} for i in range(n)], truncated, dropped)


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
