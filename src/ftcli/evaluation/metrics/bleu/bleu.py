"""BLEU metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``).

It gives the numbers of the Hub's `bleu` metric (evaluate-metric/bleu): the same arguments, defaults and
result keys, the 13a tokenizer and the TensorFlow NMT scoring (see `_bleu.py` for how that differs from
sacreBLEU's corpus BLEU).
"""

import evaluate

from ftcli.evaluation.metrics._bleu import corpus_bleu, tokenised
from ftcli.evaluation.metrics._text import TextMetric, references_per_prediction

_DESCRIPTION = """
BLEU (Bilingual Evaluation Understudy) scores machine-generated text against one or more reference texts by
its modified n-gram precisions (n = 1..max_order), combined as a geometric mean and multiplied by a brevity
penalty for outputs shorter than the references. It is computed over the whole corpus, as the Hugging Face
Hub's `bleu` metric computes it: texts split by the "13a" tokenizer (mteval-v13a), the shortest reference
of each prediction as its reference length, no smoothing unless asked for, scores in [0, 1]. Without
smoothing, a corpus without a single matching 4-gram scores 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Predicted (detokenized) texts.
    references (`list` of `str`, or `list` of `list` of `str`): One reference per prediction, or a list of
        references per prediction (their number may vary).
    tokenizer (callable): Splits a text into a list of tokens. Defaults to the 13a tokenizer.
    max_order (`int`): Longest n-gram counted. Defaults to 4.
    smooth (`bool`): Add one to the matches and possible matches of every n-gram order (Lin and Och 2004).
        Defaults to False.
Returns:
    bleu (`float`): Corpus BLEU, in [0, 1].
    precisions (`list` of `float`): Modified n-gram precision for each order 1..max_order, in [0, 1].
    brevity_penalty (`float`): In [0, 1]; 1 when the predictions are at least as long as the references.
    length_ratio (`float`): translation_length / reference_length.
    translation_length (`int`): Number of prediction tokens.
    reference_length (`int`): Number of reference tokens (the shortest reference of each prediction).
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/bleu")
    >>> metric.compute(predictions=["hello there general kenobi", "foo bar foobar"],
    ...                references=[["hello there general kenobi", "hello there !"], ["foo bar foobar"]])
    {'bleu': 1.0, 'precisions': [1.0, 1.0, 1.0, 1.0], 'brevity_penalty': 1.0, 'length_ratio': 1.1666666666666667, 'translation_length': 7, 'reference_length': 6}
"""

_CITATION = """
@inproceedings{papineni-etal-2002-bleu,
  title={{B}leu: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle={Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics},
  pages={311--318},
  year={2002}
}
@inproceedings{lin-och-2004-orange,
  title={{ORANGE}: a Method for Evaluating Automatic Evaluation Metrics for Machine Translation},
  author={Lin, Chin-Yew and Och, Franz Josef},
  booktitle={COLING 2004: Proceedings of the 20th International Conference on Computational Linguistics},
  pages={501--507},
  year={2004}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(TextMetric, evaluate.Metric):
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _codebase_urls = ["https://github.com/tensorflow/nmt/blob/master/nmt/scripts/bleu.py"]
    _reference_urls = ["https://aclanthology.org/P02-1040", "https://huggingface.co/spaces/evaluate-metric/bleu"]

    def _compute(self, predictions, references, tokenizer=None, max_order=4, smooth=False):
        refs = [tokenised(r, tokenizer) for r in references_per_prediction(references)]
        return corpus_bleu(tokenised(predictions, tokenizer), refs, max_order=max_order, smooth=smooth)
