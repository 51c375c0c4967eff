"""Corpus BLEU as the Hugging Face Hub's `bleu` metric computes it (used by `bleu/bleu.py`).

The Hub metric tokenises with the "13a" tokenizer (mteval-v13a, as in sacreBLEU) and scores with the
TensorFlow NMT `compute_bleu` (tensorflow/nmt, nmt/scripts/bleu.py). That differs from sacreBLEU's own
`corpus_bleu` in three ways, which is why this is not a sacrebleu call:
- the reference length of a prediction is its *shortest* reference, not the one closest in length;
- there is no smoothing by default, so a corpus without any matching 4-gram scores 0; `smooth=True`
  adds 1 to the matches and to the possible matches of *every* order (Lin and Och 2004), unigrams included;
- scores are fractions in [0, 1], not percentages.

Imported absolutely by the metric script; see `_base.py` for the rules evaluate's module loading imposes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

# The one use of sacrebleu's tokenizer module (not re-exported by `sacrebleu`): the same regular expressions
# as the Hub metric's copy (evaluate metrics/bleu/tokenizer_13a.py), which returns the tokens as a list where
# this one joins them with single spaces. tests/test_metrics.py pins its output on tricky input.
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

_TOKENIZER_13A = Tokenizer13a()


def tokenize_13a(text: str) -> list[str]:
    """The tokens of `text` under the 13a tokenizer, the Hub bleu metric's default."""
    return _TOKENIZER_13A(text).split()


def _ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    """How often each n-gram (a tuple, n = 1..max_order) occurs in `tokens`."""
    counts: Counter = Counter()
    for n in range(1, max_order + 1):
        counts.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return counts


def _precisions(matches: list[int], possible: list[int], smooth: bool) -> list[float]:
    if smooth:
        return [(m + 1.0) / (p + 1.0) for m, p in zip(matches, possible)]
    return [m / p if p > 0 else 0.0 for m, p in zip(matches, possible)]


def corpus_bleu(
    translations: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_order: int = 4,
    smooth: bool = False,
) -> dict:
    """BLEU of tokenised `translations` against their tokenised `references` (a list per translation).

    Returns the Hub metric's keys: bleu, precisions, brevity_penalty, length_ratio, translation_length,
    reference_length. Where the Hub metric divides by zero (no translation or no reference token at all),
    this returns a length ratio, brevity penalty and BLEU of 0.
    """
    if max_order < 1:
        raise ValueError(f"max_order must be at least 1, got {max_order}")
    matches = [0] * max_order
    possible = [0] * max_order
    translation_length = reference_length = 0
    for translation, refs in zip(translations, references):
        if not refs:
            raise ValueError("every prediction needs at least one reference")
        translation_length += len(translation)
        reference_length += min(len(r) for r in refs)
        # An n-gram counts as often as it occurs in the translation, at most as often as in any one reference.
        most_in_a_reference: Counter = Counter()
        for ref in refs:
            most_in_a_reference |= _ngram_counts(ref, max_order)
        for ngram, count in (_ngram_counts(translation, max_order) & most_in_a_reference).items():
            matches[len(ngram) - 1] += count
        for n in range(1, max_order + 1):
            possible[n - 1] += max(len(translation) - n + 1, 0)

    precisions = _precisions(matches, possible, smooth)
    # the weighted sum in the NMT script's order, so that the result agrees with the Hub's to the last bit
    geo_mean = math.exp(sum((1.0 / max_order) * math.log(p) for p in precisions)) if min(precisions) > 0 else 0.0
    if translation_length == 0 or reference_length == 0:
        ratio = brevity_penalty = 0.0
    else:
        ratio = translation_length / reference_length
        brevity_penalty = 1.0 if ratio > 1.0 else math.exp(1 - 1 / ratio)
    return {
        "bleu": geo_mean * brevity_penalty,
        "precisions": precisions,
        "brevity_penalty": brevity_penalty,
        "length_ratio": ratio,
        "translation_length": translation_length,
        "reference_length": reference_length,
    }


def tokenised(texts: Sequence[str], tokenizer: Callable[[str], Sequence[str]] | None) -> list[list[str]]:
    """Each text as a list of tokens, by `tokenizer` (any str -> list of tokens callable) or else 13a."""
    tokenize = tokenize_13a if tokenizer is None else tokenizer
    return [list(tokenize(text)) for text in texts]
