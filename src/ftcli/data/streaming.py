"""Training data larger than memory: the rows of a local file or folder read and cleaned lazily, as
training consumes them (`token_stream` tokenizes them). Rows come in file order, unshuffled:
shuffling would need them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path

from ftcli.data import cleaning
from ftcli.data.readers import LAZY_SUFFIXES, data_files, format_suffix, iter_file
from ftcli.data.row_formats import RowFormat, columns_of, detect_format
from ftcli.data.sources import as_sources, describe_source
from ftcli.errors import DataError
from ftcli.recipe import DataSource, Recipe

STREAM_PEEK = 100  # rows read ahead to choose the format of a streamed file


def _streamed_file(recipe: Recipe) -> Path:
    """The training file or folder to stream; an error for anything streaming cannot do (the
    recipe itself already requires train.max_steps)."""
    d = recipe.data
    problems = []
    if isinstance(d.train, list) or (isinstance(d.train, DataSource) and (d.train.weight != 1 or not d.train.path)):
        problems.append("data.train must be one local file or folder (no hub dataset, parallel text or mix)")
    elif not as_sources(d.train)[0].path:
        problems.append("data.train must be a local file or folder (set data.streaming: false to read a hub dataset)")
    if not d.eval and d.eval_fraction > 0:
        problems.append("a held-out split needs every row first: set data.eval, or data.eval_fraction: 0")
    if d.dedup:
        problems.append("data.dedup remembers every row: turn it off")
    if d.max_train_samples:
        problems.append("data.max_train_samples samples from all rows: remove it")
    if recipe.task == "sequence-classification":
        problems.append("classification needs every label before training: turn streaming off")
    if problems:
        raise DataError("data.streaming: " + "; ".join(problems))
    path = Path(as_sources(d.train)[0].path).expanduser()
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    whole = [f for f in data_files(path) if format_suffix(f) not in LAZY_SUFFIXES]
    if whole:
        raise DataError(f"data.streaming: {whole[0]} cannot be read lazily",
                        hint=f"stream {', '.join(LAZY_SUFFIXES)} files (gzipped too), or turn streaming off")
    return path


def stream_start(recipe: Recipe) -> tuple[RowFormat, list[str], Iterator[dict]]:
    """The streamed file's format and columns (from its first rows), and all its rows, lazily."""
    d = recipe.data
    path = _streamed_file(recipe)
    rows = (row for file in data_files(path) for row in iter_file(file, d.text_field))
    head = list(islice(rows, STREAM_PEEK))
    if not head:
        raise DataError(f"{path}: no rows")
    columns = columns_of(head)
    return detect_format(recipe, columns, str(path), head), columns, chain(head, rows)


def stream_rows(recipe: Recipe, counts: dict[str, int] | None = None) -> Iterator[dict]:
    """The cleaned training rows of a streamed file, read lazily (each call starts from the top).
    Rows cleaning removes are added to `counts` (see `ftcli.cleaning.STEPS`) as they go by, so a
    second pass over the file adds its counts again."""
    fmt, _, rows = stream_start(recipe)
    counts = {} if counts is None else counts
    for step in cleaning.STEPS:
        counts.setdefault(step, 0)
    return cleaning.clean_rows(rows, fmt, recipe.data, describe_source(recipe.data.train), counts)
