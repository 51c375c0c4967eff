"""Recall metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
from sklearn.metrics import recall_score

from ftcli.evaluation.metrics._sklearn import AveragedSklearnMetric, averaged_kwargs_description

_DESCRIPTION = """
Recall is the fraction of actual positives that are found: Recall = TP / (TP + FN).
"""

_KWARGS_DESCRIPTION = averaged_kwargs_description("recall")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Recall(AveragedSklearnMetric, evaluate.Metric):
    _key = "recall"
    _score_fn = staticmethod(recall_score)
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _reference_urls = ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html"]
