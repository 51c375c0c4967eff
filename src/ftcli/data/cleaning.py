"""Cleaning rows before training: normalise text, drop incomplete rows, duplicates, and rows too
short or too long, counting each step so a run can say what it removed and why.

Normalising never changes what a text says, only how the same text is encoded (Unicode NFC, line
ends): whitespace is content (a code answer's indentation, a reply that opens with a newline), so none
is stripped. Only the fields the row format reads are touched (`RowFormat.texts`, chat turns'
content); labels and unused columns stay exactly as read.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator

from ftcli.data.pairs import PAIR_FORMATS, identical, pair_of
from ftcli.data.row_formats import RowFormat, is_complete, row_texts
from ftcli.recipe import DataSection

STEPS = ("normalized", "incomplete", "duplicates", "too_short", "too_long")
PAIR_STEPS = ("identical_pairs",)  # preference pairs only: counted in their runs' results alone
REMOVED = {"incomplete": "incomplete", "identical_pairs": "identical chosen and rejected", "duplicates": "duplicate",
           "too_short": "too short", "too_long": "too long"}


def new_counts() -> dict[str, int]:
    return dict.fromkeys(STEPS, 0)


def normalize_text(text: str) -> str:
    """NFC (so "e" + combining accent equals "é") and Unix line ends (\\r\\n and \\r become \\n); every
    other character, surrounding whitespace included, is kept: stripping would unindent code answers."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))


def normalize_row(row: dict, fmt: RowFormat) -> dict:
    """A copy of the row with its text fields normalised; non-text values are left as they are."""
    out = dict(row)
    for field in fmt.texts:
        if isinstance(out.get(field), str):
            out[field] = normalize_text(out[field])
    key = fmt.content
    for field in fmt.chats:
        turns = out.get(field)
        if isinstance(turns, dict):  # one turn (a ShareGPT preference reply)
            if isinstance(turns.get(key), str):
                out[field] = {**turns, key: normalize_text(turns[key])}
        elif isinstance(turns, list):  # a malformed chat is reported by the completeness check
            out[field] = [{**t, key: normalize_text(t[key])} if isinstance(t, dict) and isinstance(t.get(key), str)
                          else t for t in turns]
    return out


def clean_rows(rows: Iterable[dict], fmt: RowFormat, d: DataSection, source: str, counts: dict[str, int],
               seen: set[str] | None = None) -> Iterator[dict]:
    """The rows worth training on, one at a time (so streaming can clean as it reads); each removed
    row is added to `counts`. `seen` holds duplicate keys across calls, to dedup several sources."""
    seen = set() if seen is None else seen
    if fmt.mode == "preference":
        for step in PAIR_STEPS:
            counts.setdefault(step, 0)
    for number, row in enumerate(rows, start=1):
        if d.normalize:
            fixed = normalize_row(row, fmt)
            counts["normalized"] += fixed != row
            row = fixed
        if not is_complete(row, fmt, source, number):
            counts["incomplete"] += 1
            continue
        if fmt.name in PAIR_FORMATS and identical(pair_of(row, fmt.name, fmt.data)):
            counts["identical_pairs"] += 1  # nothing to prefer; real preference files hold a few
            continue
        if d.dedup:
            key = json.dumps([row.get(f) for f in fmt.keys], ensure_ascii=False, sort_keys=True, default=str)
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
        size = sum(len(t) for t in row_texts(row, fmt))
        if d.min_chars is not None and size < d.min_chars:
            counts["too_short"] += 1
        elif d.max_chars is not None and size > d.max_chars:
            counts["too_long"] += 1
        else:
            yield row


def removed(counts: dict[str, int]) -> int:
    """Rows removed (normalising changes rows but removes none)."""
    return sum(counts.get(step, 0) for step in REMOVED)


def summary(counts: dict[str, int]) -> str:
    """"3 rows (2 incomplete, 1 duplicate)", or "" when nothing was removed."""
    n = removed(counts)
    if not n:
        return ""
    parts = ", ".join(f"{counts[step]} {REMOVED[step]}" for step in REMOVED if counts.get(step))
    return f"{n} row{'s' if n != 1 else ''} ({parts})"
