"""Accuracy metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
from sklearn.metrics import accuracy_score

from ftcli.evaluation.metrics._sklearn import SklearnMetric

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among all predictions:
Accuracy = (TP + TN) / (TP + TN + FP + FN). With the "multilabel" config it is the subset accuracy: the
fraction of examples whose whole 0/1 label vector is right.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (with the "multilabel" config: a 0/1 list per example).
    references (`list` of `int`): Ground truth labels (with the "multilabel" config: a 0/1 list per example).
    normalize (`bool`): If False, return the number of correct predictions instead of the fraction. Defaults to True.
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
Returns:
    accuracy (`float`): Fraction (or count, if normalize=False) of correct predictions.
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(SklearnMetric, evaluate.Metric):
    _key = "accuracy"
    _score_fn = staticmethod(accuracy_score)
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _reference_urls = ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"]

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        return super()._compute(predictions, references, normalize=normalize, sample_weight=sample_weight)
