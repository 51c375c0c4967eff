"""Matthews correlation metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
from sklearn.metrics import matthews_corrcoef

from ftcli.evaluation.metrics._sklearn import SklearnMetric

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) measures the quality of binary and multiclass classifications.
It is a correlation between predictions and references in [-1, +1]: +1 is a perfect prediction, 0 no better
than random, -1 total disagreement. It is informative even when the classes are very imbalanced.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels.
    references (`list` of `int`): Ground truth labels.
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
Returns:
    matthews_correlation (`float`): Matthews correlation coefficient, in [-1, 1].
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/matthews_correlation")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 1, 0])
    {'matthews_correlation': 1.0}
"""

_CITATION = """
@article{matthews1975,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405},
  number={2},
  pages={442--451},
  year={1975}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(SklearnMetric, evaluate.Metric):
    _key = "matthews_correlation"
    _score_fn = staticmethod(matthews_corrcoef)
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _reference_urls = ["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"]

    def _compute(self, predictions, references, sample_weight=None):
        return super()._compute(predictions, references, sample_weight=sample_weight)
