"""ROUGE metric bundled with ftcli (works offline; loaded via ``evaluate.load(<path>)``), by rouge-score."""

import evaluate
from rouge_score import rouge_scorer

from ftcli.evaluation.metrics._text import TextMetric, references_per_prediction

_DESCRIPTION = """
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with references by
overlapping units: rouge1 / rouge2 count word unigrams / bigrams (any "rougeN" works), rougeL uses the longest
common subsequence of the whole texts, and rougeLsum the summary-level LCS over sentences, which are taken
to be separated by newlines ("\\n"). Each score is an F-measure per example, averaged over the examples.
Texts are lowercased and split on non-alphanumeric characters (rouge-score's default tokenizer), so it
suits English; pass `tokenizer` for other languages.

Arguments, defaults and result keys are those of the Hugging Face Hub's `rouge` metric, and so are the
per-example scores (use_aggregator=False). The aggregate differs on purpose: the Hub's is the median of
the means of 1000 bootstrap resamples of the examples (rouge-score's BootstrapAggregator, under the numpy
seed evaluate draws when the module is loaded), a random estimate of the plain mean returned here. The two
agree to within that sampling noise (measured: about 1e-3 on 200 examples, 1e-2 on 5), and exactly where
resampling cannot move the median (one or two examples).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Predicted texts.
    references (`list` of `str`, or `list` of `list` of `str`): One reference per prediction, or a list of
        references per prediction (the best-scoring one counts, per ROUGE type).
    rouge_types (`list` of `str`): Scores to compute. Defaults to ["rouge1", "rouge2", "rougeL", "rougeLsum"].
    use_aggregator (`bool`): If True (default), return the mean F-measure over examples; if False, a list of
        per-example F-measures for each type.
    use_stemmer (`bool`): Strip word suffixes with the Porter stemmer before matching. Defaults to False.
    tokenizer (callable or object with a `tokenize(text)` method): Splits a text into tokens, replacing
        rouge-score's default tokenizer. Defaults to None.
Returns:
    One key per rouge type: `float` in [0, 1] (or a `list` of `float` if use_aggregator=False).
Example:
    >>> metric = evaluate.load("path/to/ftcli/evaluation/metrics/rouge")
    >>> metric.compute(predictions=["the cat sat"], references=["the cat sat down"], rouge_types=["rouge1"])
    {'rouge1': 0.8571428571428571}
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
  title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out},
  pages={74--81},
  year={2004}
}
"""

_DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class _CallableTokenizer:
    """Adapts a plain function to the `tokenize()` interface rouge-score expects."""

    def __init__(self, fn):
        self.fn = fn

    def tokenize(self, text):
        return self.fn(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(TextMetric, evaluate.Metric):
    _description = _DESCRIPTION
    _kwargs_description = _KWARGS_DESCRIPTION
    _citation = _CITATION
    _codebase_urls = ["https://github.com/google-research/google-research/tree/master/rouge"]
    _reference_urls = ["https://aclanthology.org/W04-1013"]

    def _compute(
        self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, tokenizer=None
    ):
        rouge_types = list(_DEFAULT_TYPES if rouge_types is None else rouge_types)
        if tokenizer is not None and not hasattr(tokenizer, "tokenize"):
            tokenizer = _CallableTokenizer(tokenizer)
        # split_summaries=False: rougeLsum splits on newlines, so nltk's punkt data is never needed
        scorer = rouge_scorer.RougeScorer(
            rouge_types, use_stemmer=use_stemmer, split_summaries=False, tokenizer=tokenizer
        )
        per_example = {t: [] for t in rouge_types}
        for prediction, refs in zip(predictions, references_per_prediction(references)):
            scores = scorer.score(refs[0], prediction) if len(refs) == 1 else scorer.score_multi(refs, prediction)
            for t in rouge_types:
                per_example[t].append(float(scores[t].fmeasure))
        if not use_aggregator:
            return per_example
        return {t: sum(v) / len(v) if v else 0.0 for t, v in per_example.items()}
