"""chrF / chrF++ metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``), by sacrebleu."""

import evaluate
from sacrebleu.metrics import CHRF

from ftcli.evaluation.metrics._text import TextMetric, reference_streams

_DESCRIPTION = """
chrF is the F-score of character n-gram matches (n = 1..6) between predictions and references, computed
over the whole corpus by sacrebleu. With word_order=2 it also counts word unigrams and bigrams (chrF++).
beta weighs recall beta times as much as precision (default 2). It is robust to morphology and needs no
tokenization. The arguments, defaults and result keys are those of the Hugging Face Hub's `chrf` metric
(which also wraps sacrebleu), except that the number of references may vary per prediction.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Predicted texts.
    references (`list` of `str`, or `list` of `list` of `str`): One reference per prediction, or a list of
        references per prediction (their number may vary; the best-matching one counts).
    char_order (`int`): Longest character n-gram. Defaults to 6.
    word_order (`int`): Longest word n-gram; 0 for chrF (default), 2 for chrF++.
    beta (`int`): Weight of recall relative to precision. Defaults to 2.
    lowercase (`bool`): Lowercase texts before scoring. Defaults to False.
    whitespace (`bool`): Count whitespace in character n-grams. Defaults to False.
    eps_smoothing (`bool`): Use the epsilon smoothing of chrF++.py / NLTK / Moses instead of sacrebleu's
        effective-order smoothing. Defaults to False.
Returns:
    score (`float`): Corpus chrF (or chrF++) score, in [0, 100] as sacrebleu reports it.
    char_order (`int`), word_order (`int`), beta (`int`): The settings the score was computed with.
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/chrf")
    >>> metric.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])
    {'score': 100.0, 'char_order': 6, 'word_order': 0, 'beta': 2}
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
  title={chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author={Popovi{\\'c}, Maja},
  booktitle={Proceedings of the Tenth Workshop on Statistical Machine Translation},
  pages={392--395},
  year={2015}
}
@inproceedings{popovic-2017-chrf,
  title={chr{F}++: words helping character n-grams},
  author={Popovi{\\'c}, Maja},
  booktitle={Proceedings of the Second Conference on Machine Translation},
  pages={612--618},
  year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(TextMetric, evaluate.Metric):
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _codebase_urls = ["https://github.com/mjpost/sacrebleu"]
    _reference_urls = [
        "https://aclanthology.org/W15-3049",
        "https://aclanthology.org/W17-4770",
        "https://huggingface.co/spaces/evaluate-metric/chrf",
    ]

    def _compute(
        self,
        predictions,
        references,
        char_order=6,
        word_order=0,
        beta=2,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        score = chrf.corpus_score(list(predictions), reference_streams(references))
        # the Hub metric's result keys: the score under "score" (not "chrf"), with the orders and beta used
        return {
            "score": float(score.score),
            "char_order": int(score.char_order),
            "word_order": int(score.word_order),
            "beta": int(score.beta),
        }
