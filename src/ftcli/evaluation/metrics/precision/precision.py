"""Precision metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
from sklearn.metrics import precision_score

from ftcli.evaluation.metrics._sklearn import AveragedSklearnMetric, averaged_kwargs_description

_DESCRIPTION = """
Precision is the fraction of predicted positives that are correct: Precision = TP / (TP + FP).
"""

_KWARGS_DESCRIPTION = averaged_kwargs_description("precision")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Precision(AveragedSklearnMetric, evaluate.Metric):
    _key = "precision"
    _score_fn = staticmethod(precision_score)
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _reference_urls = ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html"]
