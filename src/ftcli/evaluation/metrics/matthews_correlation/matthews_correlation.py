"""Matthews correlation metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import evaluate
import numpy as np
from sklearn.metrics import matthews_corrcoef

from ftcli.evaluation.metrics._sklearn import MULTILABEL, SklearnMetric

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) measures the quality of binary and multiclass classifications.
It is a correlation between predictions and references in [-1, +1]: +1 is a perfect prediction, 0 no better
than random, -1 total disagreement. It is informative even when the classes are very imbalanced.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (with the "multilabel" config: a 0/1 list per example).
    references (`list` of `int`): Ground truth labels (with the "multilabel" config: a 0/1 list per example).
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
    average (`str` or None): With the "multilabel" config, "macro" averages the per-label coefficients and
        None (default) returns them as a list; any other value is an error. Ignored otherwise (as on the Hub).
Returns:
    matthews_correlation (`float`, or `list` of `float`): Matthews correlation coefficient(s), in [-1, 1].
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

    def _compute(self, predictions, references, sample_weight=None, average=None):
        if self.config_name != MULTILABEL:
            return super()._compute(predictions, references, sample_weight=sample_weight)
        if average not in (None, "macro"):
            raise ValueError(f"matthews_correlation: invalid average={average!r}; expected 'macro' or None")
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.ndim != 2 or references.ndim != 2:
            raise ValueError("matthews_correlation (multilabel): predictions and references must be 2-dimensional")
        # one coefficient per label (column), as the Hub metric computes them
        per_label = [
            float(matthews_corrcoef(references[:, i], predictions[:, i], sample_weight=sample_weight))
            for i in range(references.shape[1])
        ]
        return {self._key: float(np.mean(per_label)) if average == "macro" else per_label}
