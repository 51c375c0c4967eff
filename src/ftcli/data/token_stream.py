"""Training examples for data larger than memory: rows tokenized as training consumes them.

`TokenizedStream` stands where a `tokenize.Tokenized` would (it has `examples`, `truncated` and
`dropped`), so the training path stays one path.

With `batch_size` (the global batch: per-device batch x accumulation x processes, what one optimizer
step consumes) the stream is grouped by length as train.group_by_length asks: a window of
`WINDOW_BATCHES` global batches is sorted by length, cut into global batches and yielded in an order
shuffled by (seed, epoch). Each batch pads less; every example still comes exactly once per pass; and
the same seed and epoch give the same order, so a resumed run skips the very batches it trained.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

import torch

from ftcli.errors import DataError

CHUNK = 64  # rows tokenized together: batched tokenizer calls are much faster than one row at a time
# Global batches grouped together: wide enough for similar lengths to meet (Trainer's own
# LengthGroupedSampler sorts megabatches of 50 batches), small enough to hold in memory.
WINDOW_BATCHES = 64


def length_grouped(examples: list[dict], batch_size: int, rng: random.Random) -> list[dict]:
    """`examples` reordered: sorted by length (stable), cut into batches of `batch_size`, batches in
    an order drawn from `rng`. A short last batch (the end of the stream) stays last, so the batches
    before it keep their boundaries."""
    ordered = sorted(examples, key=lambda e: len(e["input_ids"]))
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    rng.shuffle(batches)
    return [e for batch in batches + short for e in batch]


class TokenizedStream(torch.utils.data.IterableDataset):
    """Examples made from `rows()` (called afresh for every pass, so each epoch re-reads the file) by
    `tokenize(list_of_rows)`, which returns a `Tokenized`. Counts grow as rows go by. `batch_size`
    (None: stream order) and `seed` group examples by length, see the module's docstring."""

    def __init__(self, rows: Callable[[], Iterable[dict]], tokenize: Callable, source: str = "stream",
                 batch_size: int | None = None, seed: int = 0):
        self.rows, self.tokenize, self.source = rows, tokenize, source
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.rows_read = self.examples_made = self.truncated = self.dropped = 0

    @property
    def examples(self) -> "TokenizedStream":
        return self  # what the Trainer is given, as it is given Tokenized.examples

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader at the start of every pass (each epoch re-reads the file)."""
        self.epoch = epoch

    def _tokenized(self) -> Iterator[dict]:
        rows = iter(self.rows())
        while chunk := list(islice(rows, CHUNK)):
            self.rows_read += len(chunk)
            out = self.tokenize(chunk)
            self.truncated += out.truncated
            self.dropped += out.dropped
            yield from out.examples

    def _ordered(self) -> Iterator[dict]:
        examples = self._tokenized()
        if not self.batch_size:
            yield from examples
            return
        rng = random.Random(f"{self.seed}/{self.epoch}")  # a str seed: the same on every platform and run
        while window := list(islice(examples, WINDOW_BATCHES * self.batch_size)):
            yield from length_grouped(window, self.batch_size, rng)

    def __iter__(self) -> Iterator[dict]:
        made = 0
        for example in self._ordered():
            made += 1
            self.examples_made += 1
            yield example
        if not made:  # else the Trainer would stop at once, reporting success
            raise DataError(f"{self.source}: no usable training examples in the stream "
                            f"({self.rows_read} rows read, {self.dropped} cut away by max_length)")
