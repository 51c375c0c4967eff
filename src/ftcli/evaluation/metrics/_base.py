"""The mixin every bundled metric script builds its `evaluate.MetricInfo` from.

Metric scripts (`<name>/<name>.py`) import shared code absolutely (`from ftcli.evaluation.metrics._text import ...`):
`evaluate.load` copies only the script into its modules cache, so relative imports cannot work, while a
library import is accepted once it is importable (it is then used from the installed package, so edits
here need no cache busting).

`evaluate.load` instantiates the *first* non-abstract `evaluate.EvaluationModule` subclass in the script's
namespace, imported names included. So nothing in these helper modules subclasses `EvaluationModule`: they
are plain mixins, and a script defines e.g. `class F1(AveragedSklearnMetric, evaluate.Metric)`, which stays
the only EvaluationModule subclass in its namespace (tests/test_metrics.py checks both).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import evaluate


class MetricInfoMixin:
    """Builds `_info()` from class attributes: `_description`, `_kwargs_description`, `_citation`,
    `_reference_urls`, `_codebase_urls`, and the input features returned by `_features()`.

    (Underscored: `EvaluationModule` has public `description`/`citation` properties these must not shadow.)
    """

    _description: ClassVar[str]
    _kwargs_description: ClassVar[str]
    _citation: ClassVar[str]
    _reference_urls: ClassVar[Sequence[str]] = ()
    _codebase_urls: ClassVar[Sequence[str]] = ()

    def _features(self):
        raise NotImplementedError

    def _info(self):
        return evaluate.MetricInfo(
            description=self._description,
            citation=self._citation,
            inputs_description=self._kwargs_description,
            features=self._features(),
            reference_urls=list(self._reference_urls),
            codebase_urls=list(self._codebase_urls),
        )
