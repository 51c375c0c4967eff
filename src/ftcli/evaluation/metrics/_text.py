"""Helpers shared by the bundled text metrics (exact_match, bleu, chrf, rouge).

Imported absolutely by the metric scripts; see `_base.py` for the rules evaluate's module loading imposes.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence, Union

import datasets

from ftcli.evaluation.metrics._base import MetricInfoMixin


def text_features(multi_reference: bool = True) -> Union[datasets.Features, list]:
    """Input features: a string prediction and a string reference, or (`multi_reference`) either a string
    reference or a list of them per prediction. evaluate picks the first format the first input fits."""
    single = datasets.Features(
        {"predictions": datasets.Value("string", id="sequence"), "references": datasets.Value("string", id="sequence")}
    )
    if not multi_reference:
        return single
    several = datasets.Features(
        {
            "predictions": datasets.Value("string", id="sequence"),
            "references": datasets.List(datasets.Value("string", id="sequence"), id="references"),
        }
    )
    return [several, single]


def references_per_prediction(references: Sequence[Union[str, Sequence[str]]]) -> list[list[str]]:
    """Each prediction's references as a list of strings (a lone string becomes a one-element list)."""
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


def reference_streams(references: Sequence[Union[str, Sequence[str]]]) -> list[list[Optional[str]]]:
    """sacrebleu's layout: one stream per reference "slot", each as long as the predictions.

    Predictions with fewer references than the most any has are padded with None, which sacrebleu skips
    (so the number of references may vary per prediction).
    """
    refs = references_per_prediction(references)
    if any(not r for r in refs):
        raise ValueError("every prediction needs at least one reference")
    width = max((len(r) for r in refs), default=0)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


class TextMetric(MetricInfoMixin):
    """Mixin for a metric on string predictions and string references (several per prediction unless
    `_multi_reference` is False). Subclasses set the `MetricInfoMixin` attributes and `_compute`."""

    _multi_reference: ClassVar[bool] = True

    def _features(self):
        return text_features(self._multi_reference)
