"""F1 metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
from sklearn.metrics import f1_score

from ftcli.evaluation.metrics._sklearn import AveragedSklearnMetric, averaged_kwargs_description

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall: F1 = 2 * (precision * recall) / (precision + recall).
"""

_KWARGS_DESCRIPTION = averaged_kwargs_description("f1")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(AveragedSklearnMetric, evaluate.Metric):
    _key = "f1"
    _score_fn = staticmethod(f1_score)
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _reference_urls = ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"]
