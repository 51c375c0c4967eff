"""Exact-match metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``)."""

import re
import string

import evaluate

from ftcli.evaluation.metrics._text import TextMetric

_DESCRIPTION = """
Exact match is the fraction of predictions that are identical to their reference, character for character,
after the optional normalisations below. It is 1.0 when every prediction matches and 0.0 when none does.

Arguments, defaults, the order of the normalisations and the result are those of the Hugging Face Hub's
`exact_match` metric. It compares Python strings where the Hub compares numpy string arrays, which differs
only on artefacts of those arrays: trailing NUL characters are ignored there and a lowercased character
that grows longer ("İ") can be cut short. A single regex passed as a plain string is one pattern here,
where the Hub would take each of its characters as a pattern. With no predictions the score is 0.0 (the
Hub returns nan).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Predicted texts.
    references (`list` of `str`): One reference text per prediction.
    regexes_to_ignore (`list` of `str`): Regular expressions whose matches are deleted from both texts before
        comparing (applied first, in order). Defaults to None.
    ignore_case (`bool`): Compare lowercased texts. Defaults to False.
    ignore_punctuation (`bool`): Delete ASCII punctuation (`string.punctuation`) before comparing. Defaults to False.
    ignore_numbers (`bool`): Delete the digits 0-9 before comparing. Defaults to False.
Returns:
    exact_match (`float`): Fraction of exact matches, in [0, 1].
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/exact_match")
    >>> metric.compute(predictions=["Paris.", "rome"], references=["paris", "Rome"], ignore_case=True)
    {'exact_match': 0.5}
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing},
  pages={2383--2392},
  year={2016}
}
"""


def _normaliser(regexes_to_ignore, ignore_case, ignore_punctuation, ignore_numbers):
    """A function applying the requested normalisations to one text, in the documented order."""
    patterns = [re.compile(r) for r in (regexes_to_ignore or [])]
    deleted = (string.punctuation if ignore_punctuation else "") + (string.digits if ignore_numbers else "")
    table = str.maketrans("", "", deleted)

    def normalise(text):
        for pattern in patterns:
            text = pattern.sub("", text)
        if ignore_case:
            text = text.lower()
        return text.translate(table)

    return normalise


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(TextMetric, evaluate.Metric):
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _multi_reference = False
    _reference_urls = ["https://huggingface.co/spaces/evaluate-metric/exact_match"]

    def _compute(
        self,
        predictions,
        references,
        regexes_to_ignore=None,
        ignore_case=False,
        ignore_punctuation=False,
        ignore_numbers=False,
    ):
        if isinstance(regexes_to_ignore, str):
            regexes_to_ignore = [regexes_to_ignore]
        normalise = _normaliser(regexes_to_ignore, ignore_case, ignore_punctuation, ignore_numbers)
        matches = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references))
        return {"exact_match": matches / len(predictions) if predictions else 0.0}
