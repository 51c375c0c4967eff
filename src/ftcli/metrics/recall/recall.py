"""Recall metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import recall_score


_DESCRIPTION = """
Recall is the fraction of actual positives that are found: Recall = TP / (TP + FN).
"""

_KWARGS_DESCRIPTION = """
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
    recall (`float`, or `list` of `float` when average is None): Score in [0, 1].
Example:
    >>> metric = evaluate.load("path/to/ftcli/metrics/recall")
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2], average="macro")
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html"],
        )

    def _compute(
        self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None, zero_division="warn"
    ):
        score = recall_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"recall": float(score) if np.ndim(score) == 0 else [float(s) for s in score]}
