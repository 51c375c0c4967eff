"""BLEU metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``), computed by sacrebleu."""

import evaluate
from sacrebleu.metrics import BLEU

from ftcli.evaluation.metrics._text import TextMetric, reference_streams

_DESCRIPTION = """
BLEU (Bilingual Evaluation Understudy) scores machine-generated text against one or more reference texts by
its modified n-gram precisions (n = 1..4), combined as a geometric mean and multiplied by a brevity penalty
for outputs shorter than the references. It is computed over the whole corpus (not averaged per sentence)
by sacrebleu, with its default "13a" tokenizer, so scores are comparable with published sacreBLEU numbers
(divided by 100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Predicted (detokenized) texts.
    references (`list` of `str`, or `list` of `list` of `str`): One reference per prediction, or a list of
        references per prediction (their number may vary).
    tokenize (`str`): sacrebleu tokenizer: "13a" (default), "none", "intl", "char", "zh", "flores101", ...
    lowercase (`bool`): Lowercase texts before scoring. Defaults to False.
    smooth_method (`str`): "exp" (default), "floor", "add-k" or "none".
    smooth_value (`float`): The value for "floor" (default 0.1) and "add-k" (default 1) smoothing.
    max_order (`int`): Longest n-gram counted. Defaults to 4.
    use_effective_order (`bool`): Ignore n-gram orders without any match in the geometric mean (for
        sentence-level use). Defaults to False.
Returns:
    bleu (`float`): Corpus BLEU, in [0, 1].
    precisions (`list` of `float`): Modified n-gram precision for each order 1..max_order, in [0, 1].
    brevity_penalty (`float`): In (0, 1]; 1 when the predictions are at least as long as the references.
    length_ratio (`float`): translation_length / reference_length.
    translation_length (`int`): Number of prediction tokens.
    reference_length (`int`): Number of reference tokens (closest reference length per prediction).
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/bleu")
    >>> metric.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])["bleu"]
    1.0
"""

_CITATION = """
@inproceedings{papineni-etal-2002-bleu,
  title={{B}leu: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle={Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics},
  pages={311--318},
  year={2002}
}
@inproceedings{post-2018-call,
  title={A Call for Clarity in Reporting {BLEU} Scores},
  author={Post, Matt},
  booktitle={Proceedings of the Third Conference on Machine Translation: Research Papers},
  pages={186--191},
  year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(TextMetric, evaluate.Metric):
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _codebase_urls = ["https://github.com/mjpost/sacrebleu"]
    _reference_urls = ["https://aclanthology.org/P02-1040", "https://aclanthology.org/W18-6319"]

    def _compute(
        self,
        predictions,
        references,
        tokenize="13a",
        lowercase=False,
        smooth_method="exp",
        smooth_value=None,
        max_order=4,
        use_effective_order=False,
    ):
        bleu = BLEU(
            lowercase=lowercase,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            max_ngram_order=max_order,
            effective_order=use_effective_order,
        )
        score = bleu.corpus_score(list(predictions), reference_streams(references))
        return {
            "bleu": score.score / 100,
            "precisions": [p / 100 for p in score.precisions],
            "brevity_penalty": float(score.bp),
            "length_ratio": score.sys_len / score.ref_len if score.ref_len else 0.0,
            "translation_length": int(score.sys_len),
            "reference_length": int(score.ref_len),
        }
