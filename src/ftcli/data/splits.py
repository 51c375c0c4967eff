"""Training and eval rows for a recipe: read the sources, pick the row format, clean, hold out an
eval split, mix by weight, sample.

Rows are plain dicts, in the fields of their format (`row_formats`); `tokenize` turns them into
tokens. Reading lives in `readers` (files) and `sources` (hub, parallel text, mixing), cleaning in
`cleaning`, lazily read training files in `streaming`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from ftcli.data import cleaning
from ftcli.data.row_formats import RowFormat, columns_of, detect_format, require_columns
from ftcli.data.sources import as_sources, describe_source, is_mix, mix, read_source
from ftcli.data.streaming import stream_start
from ftcli.errors import DataError
from ftcli.recipe import DataSource, Recipe


@dataclass
class Splits:
    """The rows one run trains and evaluates on, and what happened to them on the way."""

    mode: str  # "classification", "sft", "text" (language modelling on plain text) or "seq2seq"
    train: list[dict]  # empty when data.streaming: training rows come from `stream_rows`
    eval: list[dict]
    format: str = ""  # sft: "prompt_response", "alpaca", "messages", "prompt_completion" or "sharegpt"; else the mode
    columns: list[str] = field(default_factory=list)
    # Per split ("train", and "eval" when read from data.eval): rows changed or removed by each step.
    cleaning: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per source: split, source, weight, rows_read, rows_kept (after cleaning), rows_used (in the split).
    sources: list[dict] = field(default_factory=list)
    # Set by `rows_cache` when these rows came from (or went into) its cache: a key for exactly them.
    fingerprint: str | None = None

    def __post_init__(self):
        self.format = self.format or self.mode

    @property
    def rows_dropped(self) -> int:
        return sum(cleaning.removed(c) for c in self.cleaning.values())

    def dropped_summary(self) -> str:
        """E.g. "3 rows (2 incomplete, 1 duplicate)"; "" when cleaning removed nothing."""
        total = cleaning.new_counts()
        for counts in self.cleaning.values():
            total = {k: total.get(k, 0) + counts.get(k, 0) for k in {**total, **counts}}
        return cleaning.summary(total)


def _read_all(recipe: Recipe, sources: list[DataSource]) -> list[list[dict]]:
    d = recipe.data
    return [read_source(s, d.text_field, d.prompt_field, d.response_field) for s in sources]


def _clean(recipe: Recipe, fmt: RowFormat, sources: list[DataSource], parts: list[list[dict]],
           what: str) -> tuple[list[list[dict]], dict[str, int]]:
    """Each source's rows cleaned (dedup across all of them: keep the first); an error if none are left."""
    counts, seen = cleaning.new_counts(), set()
    kept = [list(cleaning.clean_rows(rows, fmt, recipe.data, describe_source(s), counts, seen))
            for s, rows in zip(sources, parts)]
    if parts and not any(kept):
        name = ", ".join(describe_source(s) for s in sources)
        if counts["incomplete"] == sum(len(rows) for rows in parts):
            raise DataError(f"{name}: every row has an empty or null {' / '.join(fmt.required)}")
        raise DataError(f"{name}: no {what} rows left after cleaning ({cleaning.summary(counts)} removed)",
                        hint="loosen data.min_chars / data.max_chars")
    return kept, counts


def _hold_out(parts: list[list[dict]], fraction: float, seed: int) -> tuple[list[list[dict]], list[dict]]:
    """A seeded eval share of each source, in file order; before mixing, so a row repeated by its
    weight can never be in both splits."""
    rng, train_parts, eval_rows = random.Random(seed), [], []
    for rows in parts:
        if fraction <= 0 or len(rows) < 2:
            train_parts.append(rows)
            continue
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_eval = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        eval_rows += [rows[i] for i in sorted(order[:n_eval])]
        train_parts.append([rows[i] for i in sorted(order[n_eval:])])
    return train_parts, eval_rows


def _combine(data, sources: list[DataSource], parts: list[list[dict]], seed: int) -> tuple[list[dict], list[int]]:
    """Rows of all sources, mixed by weight when the data is a mix, else as read. Returns the rows and
    each row's source index."""
    if is_mix(data):
        return mix(parts, [s.weight for s in sources], seed)
    return [row for rows in parts for row in rows], [i for i, rows in enumerate(parts) for _ in rows]


def _source_report(split: str, sources, read, kept, origin) -> list[dict]:
    used = Counter(origin)
    return [{"split": split, "source": describe_source(s), "weight": s.weight, "rows_read": len(r),
             "rows_kept": len(k), "rows_used": used[i]} for i, (s, r, k) in enumerate(zip(sources, read, kept))]


def load_splits(recipe: Recipe) -> Splits:
    """Train and eval rows for a recipe: read, choose the format, clean, split and mix (seeded)."""
    d, seed = recipe.data, recipe.train.seed
    if d.streaming:
        return _streaming_splits(recipe)
    train_sources = as_sources(d.train)
    read = _read_all(recipe, train_sources)
    fmt = detect_format(recipe, columns_of(read[0]), describe_source(train_sources[0]), read[0][:1000])
    for source, rows in zip(train_sources[1:], read[1:]):
        require_columns(fmt, columns_of(rows), describe_source(source), recipe)
    kept, counts = _clean(recipe, fmt, train_sources, read, "training")
    report = {"train": counts}

    if d.eval:
        eval_sources = as_sources(d.eval)
        eval_read = _read_all(recipe, eval_sources)
        for source, rows in zip(eval_sources, eval_read):
            require_columns(fmt, columns_of(rows), describe_source(source), recipe)
        eval_kept, report["eval"] = _clean(recipe, fmt, eval_sources, eval_read, "eval")
        eval_rows, eval_origin = _combine(d.eval, eval_sources, eval_kept, seed)
        train_parts = kept
    else:
        train_parts, eval_rows = _hold_out(kept, d.eval_fraction, seed)

    train, origin = _combine(d.train, train_sources, train_parts, seed)
    if d.max_train_samples and d.max_train_samples < len(train):
        picked = sorted(random.Random(seed).sample(range(len(train)), d.max_train_samples))
        train, origin = [train[i] for i in picked], [origin[i] for i in picked]

    sources = _source_report("train", train_sources, read, kept, origin)
    if d.eval:
        sources += _source_report("eval", eval_sources, eval_read, eval_kept, eval_origin)
    columns = list(dict.fromkeys(c for rows in read for c in columns_of(rows)))
    return Splits(mode=fmt.mode, format=fmt.name, train=train, eval=eval_rows, columns=columns,
                  cleaning=report, sources=sources)


def _streaming_splits(recipe: Recipe) -> Splits:
    """Splits for a streamed run: the format from the file's first rows, the eval rows read whole,
    no training rows (they come from `stream_rows`)."""
    fmt, columns, _ = stream_start(recipe)
    eval_sources = as_sources(recipe.data.eval) if recipe.data.eval else []
    eval_read = _read_all(recipe, eval_sources)
    for source, rows in zip(eval_sources, eval_read):
        require_columns(fmt, columns_of(rows), describe_source(source), recipe)
    eval_kept, counts = _clean(recipe, fmt, eval_sources, eval_read, "eval")
    eval_rows, origin = _combine(recipe.data.eval, eval_sources, eval_kept, recipe.train.seed) if eval_sources \
        else ([], [])
    return Splits(mode=fmt.mode, format=fmt.name, train=[], eval=eval_rows, columns=columns,
                  cleaning={"eval": counts} if eval_sources else {},
                  sources=_source_report("eval", eval_sources, eval_read, eval_kept, origin))
