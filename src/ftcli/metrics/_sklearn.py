"""Scaffolding shared by the bundled scikit-learn classification metrics (accuracy, f1, precision, ...).

Each metric script (`<name>/<name>.py`) imports this module absolutely (`from ftcli.metrics._sklearn import
...`): `evaluate.load` only checks that such a library import is importable, and the script then uses the
installed copy (it is not copied next to the script, so an edit here needs no cache busting).

`evaluate.load` instantiates the *first* non-abstract `evaluate.EvaluationModule` subclass it finds in the
script's namespace, imported names included. So nothing here subclasses `EvaluationModule`: `SklearnMetric`
and `AveragedSklearnMetric` are plain mixins, and a script defines `class F1(AveragedSklearnMetric,
evaluate.Metric)`, which stays the only EvaluationModule subclass in its namespace.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import datasets
import evaluate
import numpy as np

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
    predictions (`list` of `int`): Predicted labels.
    references (`list` of `int`): Ground truth labels.
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
    >>> metric = evaluate.load("path/to/ftcli/metrics/{module or key}")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], average="macro")
"""


def _as_python(score: Any) -> float | list[float]:
    """A numpy scalar becomes a float, an array (per-label scores) a list of floats."""
    return float(score) if np.ndim(score) == 0 else [float(s) for s in score]


class SklearnMetric:
    """Mixin for a metric computed by one sklearn function `_score_fn(y_true, y_pred, **kwargs)`.

    Subclasses set `_key` (the result key), `_score_fn = staticmethod(<sklearn function>)`, `_description`,
    `_kwargs_description`, `_reference_url` and optionally `_citation`. (Underscored: `EvaluationModule` has
    public `description`/`citation` properties that these must not shadow.) `compute()` kwargs other than
    predictions/references go to `_score_fn`.
    """

    _key: ClassVar[str]
    _score_fn: ClassVar[Callable[..., Any]]
    _description: ClassVar[str]
    _kwargs_description: ClassVar[str]
    _reference_url: ClassVar[str]
    _citation: ClassVar[str] = SKLEARN_CITATION

    def _info(self):
        return evaluate.MetricInfo(
            description=self._description,
            citation=self._citation,
            inputs_description=self._kwargs_description,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=[self._reference_url],
        )

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
