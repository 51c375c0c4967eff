"""Read training/eval rows from files or the hub, check the fields the recipe names, split.

Rows are plain dicts. Reading small local files ourselves (rather than through `datasets`) lets every
error name the file and line, which users need far more than a generic parser exception.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ftcli.errors import DataError
from ftcli.recipe import Recipe

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")  # each also gzipped (.gz)


@dataclass
class Splits:
    """The rows one run trains and evaluates on, and what was dropped on the way."""

    mode: str  # "classification", "sft" (prompt/response) or "text" (plain language modelling)
    train: list[dict]
    eval: list[dict]
    dropped: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz."""
    raw = path.read_bytes()
    if path.suffix.lower() != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None


def _format_suffix(path: Path) -> str:
    """The data format's suffix: `train.jsonl.gz` is JSONL."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix == ".gz" else suffix


def _decode(path: Path) -> str:
    raw = _raw_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte offset {exc.start})",
                        hint="re-save the file as UTF-8") from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; DataError naming the line."""
    for number, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object")
        yield number, row


def _read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(path)]


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(_decode(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects",
                        hint="one object per line is .jsonl; a .json file holds [ {...}, {...} ]")
    return data


def _read_delimited(path: Path, delimiter: str) -> list[dict]:
    # TSV is read with quoting disabled so raw quotes in text survive (news text is full of them).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(io.StringIO(_decode(path), newline=""), delimiter=delimiter, quoting=quoting)
    rows = []
    for row in reader:
        if None in row:
            raise DataError(f"{path}: line {reader.line_num} has more fields than the header")
        rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(_raw_bytes(path))).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read parquet: {exc}") from None


def _read_hub(name: str) -> list[dict]:
    import datasets

    try:
        return list(datasets.load_dataset(name, split="train"))
    except Exception as exc:  # offline, missing, or gated: all are the user's to fix
        raise DataError(f"data '{name}' is not a local file and could not be loaded as a hub dataset: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        hint="use a local file path (.jsonl .json .csv .tsv .parquet), or connect to the Hub") from None


def looks_like_file(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).suffix != ""


def _read_text_lines(path: Path, field_name: str) -> list[dict]:
    """Plain text, one example per line (blank lines skipped), under the recipe's text field."""
    return [{field_name: line} for line in _decode(path).splitlines() if line.strip()]


def read_rows(source: str, text_field: str = "text") -> list[dict]:
    """All rows of a data source, as dicts. Raises DataError naming the file and what is wrong.
    A .txt file gives one row per line, its text under `text_field`."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_file(source):
            raise DataError(f"data file not found: {source}")
        return _read_hub(source)
    if path.is_dir():
        return _read_directory(path, text_field)
    return _read_file(path, text_field)


def _read_directory(folder: Path, text_field: str) -> list[dict]:
    """Every data file below a folder, in sorted path order (so a run sees the same row order)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and _format_suffix(p) in SUFFIXES)
    if not files:
        raise DataError(f"{folder} is a folder with no data files ({', '.join(SUFFIXES)}, or gzipped)")
    return [row for file in files for row in _read_file(file, text_field)]


def _read_file(path: Path, text_field: str) -> list[dict]:
    source = str(path)
    suffix = _format_suffix(path)
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet,
               ".csv": lambda p: _read_delimited(p, ","), ".tsv": lambda p: _read_delimited(p, "\t"),
               ".txt": lambda p: _read_text_lines(p, text_field)}
    if suffix not in readers:
        raise DataError(f"{source}: unsupported file type '{suffix or '(none)'}'",
                        hint=f"use one of {', '.join(SUFFIXES)}, or any of them gzipped (.gz)")
    rows = readers[suffix](path)
    if not rows:
        raise DataError(f"{source}: no rows")
    return rows


def _columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:
        seen.update(dict.fromkeys(row))
    return list(seen)


def choose_mode(recipe: Recipe, columns: list[str], source: str) -> str:
    """Which kind of run the data asks for; an error that lists the fields the data has otherwise."""
    d = recipe.data
    have = ", ".join(columns) or "(none)"
    if recipe.task == "sequence-classification":
        missing = [f for f in (d.text_field, d.label_field) if f not in columns]
        if missing:
            raise DataError(f"{source}: field(s) {', '.join(missing)} not found; the data has: {have}",
                            hint="set data.text_field / data.label_field to the names your data uses")
        return "classification"
    if d.prompt_field in columns and d.response_field in columns:
        return "sft"
    if d.text_field in columns:
        return "text"
    raise DataError(f"{source}: causal-lm needs fields '{d.prompt_field}' and '{d.response_field}' (SFT) "
                    f"or '{d.text_field}' (plain text); the data has: {have}",
                    hint="set data.prompt_field/response_field or data.text_field to the names your data uses")


def required_fields(recipe: Recipe, mode: str) -> tuple[str, ...]:
    d = recipe.data
    return {"classification": (d.text_field, d.label_field), "sft": (d.prompt_field, d.response_field),
            "text": (d.text_field,)}[mode]


def _keep_complete(rows: list[dict], fields: tuple[str, ...]) -> tuple[list[dict], int]:
    """Drop rows whose required fields are null or blank text; return the rest and how many went."""
    def ok(value) -> bool:
        return value is not None and not (isinstance(value, str) and not value.strip())

    kept = [r for r in rows if all(ok(r.get(f)) for f in fields)]
    return kept, len(rows) - len(kept)


def load_splits(recipe: Recipe) -> Splits:
    """Train and eval rows for a recipe: read, check fields, drop incomplete rows, split (seeded)."""
    d, seed = recipe.data, recipe.train.seed
    train = read_rows(d.train, d.text_field)
    columns = _columns(train)
    mode = choose_mode(recipe, columns, d.train)
    fields = required_fields(recipe, mode)
    train, dropped_train = _keep_complete(train, fields)
    if not train:
        raise DataError(f"{d.train}: every row has an empty or null {' / '.join(fields)}")
    dropped = {"train_incomplete": dropped_train}

    if d.eval:
        eval_rows = read_rows(d.eval, d.text_field)
        missing = [f for f in fields if f not in _columns(eval_rows)]
        if missing:
            raise DataError(f"{d.eval}: field(s) {', '.join(missing)} not found; "
                            f"the data has: {', '.join(_columns(eval_rows))}")
        eval_rows, dropped["eval_incomplete"] = _keep_complete(eval_rows, fields)
    elif d.eval_fraction > 0 and len(train) > 1:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = min(len(train) - 1, max(1, round(len(train) * d.eval_fraction)))
        eval_rows = [train[i] for i in sorted(order[:n_eval])]
        train = [train[i] for i in sorted(order[n_eval:])]
    else:
        eval_rows = []

    if d.max_train_samples and d.max_train_samples < len(train):
        picked = random.Random(seed).sample(range(len(train)), d.max_train_samples)
        train = [train[i] for i in sorted(picked)]
    return Splits(mode=mode, train=train, eval=eval_rows, dropped=dropped, columns=columns)
