"""A run's rows as training and eval examples: tokenized through the cache, or, with data.streaming,
a stream tokenized as training consumes it."""

from __future__ import annotations

from ftcli import ranks
from ftcli.data.sources import describe_source
from ftcli.data.streaming import stream_rows
from ftcli.data.token_cache import cached_tokenize
from ftcli.data.token_stream import TokenizedStream
from ftcli.data.tokenize import tokenize
from ftcli.data.tokenize_pairs import tokenize_pairs
from ftcli.errors import DataError
from ftcli.recipe import Recipe


def stream_batch(recipe: Recipe) -> int | None:
    """The global batch a stream groups by length (train.group_by_length), as training/trainer.py's
    sampler groups a dataset in memory; None: stream order."""
    t = recipe.train
    return t.batch_size * t.gradient_accumulation_steps * ranks.world_size() if t.group_by_length else None


def prepare_splits(recipe: Recipe, splits, tokenizer, label2id: dict | None, log=None):
    """Tokenized (train, eval) examples of a run, through the cache; with data.streaming the training
    examples are a stream, read and tokenized as training consumes them. Eval rows are prepared with
    the training rows, so a bad label or field fails now, not after hours of training."""
    d = recipe.data
    train_source = describe_source(d.train)
    eval_source = describe_source(d.eval) if d.eval else "eval split"

    def tokenize_rows(rows, source, split):
        if splits.mode == "preference":
            return tokenize_pairs(rows, tokenizer, recipe, splits.format, source)
        return tokenize(splits.mode, rows, tokenizer, recipe, label2id, source, format=splits.format, split=split)

    def prepared(rows, source, split):
        rows_id = f"{splits.fingerprint}/{split}" if getattr(splits, "fingerprint", None) else None
        # `split` in the key too: masked-lm eval examples carry masks, training ones do not.
        return cached_tokenize(lambda: tokenize_rows(rows, source, split), rows, tokenizer, recipe, log, rows_id,
                               mode=splits.mode, format=splits.format, label2id=label2id, split=split)

    if d.streaming:
        counts = splits.cleaning.setdefault("train", {})  # filled in as the stream goes by
        train_set = TokenizedStream(lambda: stream_rows(recipe, counts),
                                    lambda rows: tokenize_rows(rows, train_source, "train"), train_source,
                                    batch_size=stream_batch(recipe), seed=recipe.train.seed)
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
