"""Local data files as rows: JSONL, JSON, CSV, TSV, parquet and plain text, each possibly gzipped,
one file or a folder of them.

We read files ourselves (rather than through `datasets`) so every error names the file and line.
Line-based formats are read one line at a time (`iter_file`), which is also how streaming reads a
file larger than memory; `read_file` is the same thing collected into a list.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from ftcli.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")  # each also gzipped (.gz)
LAZY_SUFFIXES = (".jsonl", ".csv", ".tsv", ".txt")  # read line by line; .json and .parquet are read whole
_UTF8_HINT = "re-save the file as UTF-8"


def format_suffix(path: Path) -> str:
    """The data format's suffix: `train.jsonl.gz` is JSONL."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix == ".gz" else suffix


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _gzip_error(path: Path, exc: Exception) -> DataError:
    return DataError(f"{path}: not a valid gzip file ({exc})")


def _raw_bytes(path: Path) -> bytes:
    """The whole file's bytes, gunzipped when it ends in .gz."""
    raw = path.read_bytes()
    if not _is_gzip(path):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise _gzip_error(path, exc) from None


def _decode(path: Path) -> str:
    """The whole file as text (for formats that cannot be read line by line)."""
    raw = _raw_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte offset {exc.start})", hint=_UTF8_HINT) from None


def _binary_lines(path: Path) -> Iterator[bytes]:
    if not _is_gzip(path):
        with path.open("rb") as f:
            yield from f
        return
    with gzip.open(path, "rb") as f:
        try:
            yield from f
        except (OSError, EOFError) as exc:  # a bad or truncated gzip shows only when read
            raise _gzip_error(path, exc) from None


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its line end) for every line, split on "\\n" only (so a stray U+2028
    inside a line cannot shift the rows of aligned files), decoded one line at a time so a UTF-8
    error names its line."""
    offset = 0
    for number, raw in enumerate(_binary_lines(path), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid UTF-8 (byte offset {offset + exc.start})",
                            hint=_UTF8_HINT) from None
        offset += len(raw)
        yield number, text


def _bare(line: str) -> str:
    return line.removesuffix("\n").removesuffix("\r")


def read_lines(path: Path) -> list[str]:
    """Every line of a text file, blank ones included (parallel text keeps its alignment)."""
    return [_bare(line) for _, line in text_lines(path)]


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; DataError naming the line."""
    for number, line in text_lines(Path(path)):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(row).__name__}, expected an object")
        yield number, row


def _iter_delimited(path: Path, delimiter: str) -> Iterator[dict]:
    # TSV is read with quoting disabled so raw quotes in text survive (news text is full of them).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.DictReader((line for _, line in text_lines(path)), delimiter=delimiter, quoting=quoting)
    for row in reader:
        if None in row:
            raise DataError(f"{path}: line {reader.line_num} has more fields than the header")
        yield row


def _iter_text(path: Path, field_name: str) -> Iterator[dict]:
    """Plain text, one example per line (blank lines skipped), under the recipe's text field."""
    for _, line in text_lines(path):
        if line.strip():
            yield {field_name: _bare(line)}


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(_decode(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects",
                        hint="one object per line is .jsonl; a .json file holds [ {...}, {...} ]")
    return data


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(_raw_bytes(path))).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read parquet: {exc}") from None


def iter_file(path: Path, text_field: str = "text") -> Iterator[dict]:
    """The rows of one data file, read lazily where the format allows it."""
    suffix = format_suffix(path)
    readers = {".jsonl": lambda p: (row for _, row in iter_jsonl(p)), ".json": _read_json,
               ".parquet": _read_parquet, ".csv": lambda p: _iter_delimited(p, ","),
               ".tsv": lambda p: _iter_delimited(p, "\t"), ".txt": lambda p: _iter_text(p, text_field)}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type '{suffix or '(none)'}'",
                        hint=f"use one of {', '.join(SUFFIXES)}, or any of them gzipped (.gz)")
    yield from readers[suffix](path)


def read_file(path: Path, text_field: str = "text") -> list[dict]:
    rows = list(iter_file(path, text_field))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def data_files(path: Path) -> list[Path]:
    """A file itself, or every data file below a folder in sorted path order (so a run sees the
    same row order every time)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and format_suffix(p) in SUFFIXES)
    if not files:
        raise DataError(f"{path} is a folder with no data files ({', '.join(SUFFIXES)}, or gzipped)")
    return files
