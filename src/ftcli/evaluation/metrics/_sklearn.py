"""Scaffolding shared by the bundled scikit-learn classification metrics (accuracy, f1, precision, ...).

Imported absolutely by the metric scripts; see `_base.py` for the rules evaluate's module loading imposes.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import datasets
import numpy as np

from ftcli.evaluation.metrics._base import MetricInfoMixin

SKLEARN_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


def averaged_kwargs_description(key: str, module: str | None = None) -> str:
    """The `compute()` argument docs of an averaged score (f1, precision, recall) that returns `{key: ...}`."""
    return f"""
Args:
    predictions (`list` of `int`): Predicted labels (with the "multilabel" config: a 0/1 list per example).
    references (`list` of `int`): Ground truth labels (with the "multilabel" config: a 0/1 list per example).
    labels (`list` of `int`): Labels to include when average != "binary" (and their order if average is None).
        Defaults to None (all labels present in the data).
    pos_label (`int`): The positive class when average="binary". Defaults to 1.
    average (`str` or None): "binary" (default, binary tasks only: score of `pos_label`), "micro" (global
        TP/FP/FN counts), "macro" (unweighted mean over labels), "weighted" (mean weighted by support), or
        None (per-label scores, returned as a list).
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
    zero_division (`"warn"`, 0 or 1): Value returned when the score is undefined. Defaults to "warn" (acts as 0).
Returns:
    {key} (`float`, or `list` of `float` when average is None): Score in [0, 1].
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/{module or key}")
    >>> metric.compute(predictions=[0, 2, 1, 0, 0, 1], references=[0, 1, 2, 0, 1, 2], average="macro")
    >>> multilabel = evaluate.load("path/to/ftcli/evaluation/metrics/{module or key}", "multilabel")
    >>> multilabel.compute(predictions=[[0, 1, 1], [1, 1, 0]], references=[[0, 1, 1], [0, 1, 0]], average="macro")
"""


def _as_python(score: Any) -> float | list[float]:
    """A numpy scalar becomes a float, an array (per-label scores) a list of floats."""
    return float(score) if np.ndim(score) == 0 else [float(s) for s in score]


# The config name under which, as on the Hub, each example is a 0/1 vector (one entry per label):
# `evaluate.load(<path>, "multilabel")`.
MULTILABEL = "multilabel"


class SklearnMetric(MetricInfoMixin):
    """Mixin for a metric computed by one sklearn function `_score_fn(y_true, y_pred, **kwargs)`; with the
    "multilabel" config the inputs are label-indicator vectors, which sklearn scores as such.

    Subclasses set `_key` (the result key), `_score_fn = staticmethod(<sklearn function>)`, `_description`,
    `_kwargs_description`, `_reference_urls` and optionally `_citation` (default: scikit-learn's).
    `compute()` kwargs other than predictions/references go to `_score_fn`.
    """

    _key: ClassVar[str]
    _score_fn: ClassVar[Callable[..., Any]]
    _citation: ClassVar[str] = SKLEARN_CITATION

    def _features(self):
        label = datasets.Value("int32")
        if self.config_name == MULTILABEL:  # set by evaluate.load(path, config_name) before _info() runs
            label = datasets.List(label)
        return datasets.Features({"predictions": label, "references": label})

    def _compute(self, predictions, references, **kwargs):
        return {self._key: _as_python(self._score_fn(references, predictions, **kwargs))}


class AveragedSklearnMetric(SklearnMetric):
    """Mixin for f1/precision/recall: the same arguments and defaults as sklearn's averaged scores."""

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division="warn",
    ):
        return super()._compute(
            predictions,
            references,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
