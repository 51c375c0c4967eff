"""Training examples for data larger than memory: rows tokenized as training consumes them.

`TokenizedStream` stands where a `tokenize.Tokenized` would (it has `examples`, `truncated` and
`dropped`), so the training path stays one path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import torch

from ftcli.errors import DataError

CHUNK = 64  # rows tokenized together: batched tokenizer calls are much faster than one row at a time


class TokenizedStream(torch.utils.data.IterableDataset):
    """Examples made from `rows()` (called afresh for every pass, so each epoch re-reads the file) by
    `tokenize(list_of_rows)`, which returns a `Tokenized`. Counts grow as rows go by."""

    def __init__(self, rows: Callable[[], Iterable[dict]], tokenize: Callable, source: str = "stream"):
        self.rows, self.tokenize, self.source = rows, tokenize, source
        self.rows_read = self.examples_made = self.truncated = self.dropped = 0

    @property
    def examples(self) -> "TokenizedStream":
        return self  # what the Trainer is given, as it is given Tokenized.examples

    def __iter__(self) -> Iterator[dict]:
        rows, made = iter(self.rows()), 0
        while chunk := list(islice(rows, CHUNK)):
            self.rows_read += len(chunk)
            out = self.tokenize(chunk)
            self.truncated += out.truncated
            self.dropped += out.dropped
            for example in out.examples:
                made += 1
                self.examples_made += 1
                yield example
        if not made:  # else the Trainer would stop at once, reporting success
            raise DataError(f"{self.source}: no usable training examples in the stream "
                            f"({self.rows_read} rows read, {self.dropped} cut away by max_length)")
