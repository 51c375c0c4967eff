"""A bundled metric named like a Hugging Face Hub metric gives that metric's numbers.

Reference values come from the Hub metrics' own documentation (the docstring examples and metric cards in
huggingface/evaluate, metrics/<name>/<name>.py and README.md, main at a7dd338, April 2026), from the test
suites of the libraries they wrap (sacrebleu test/test_chrf.py; google-research rouge/rouge_scorer_test.py),
and, where those have no non-trivial case, from running the Hub bleu metric's own code (see HUB_RUN).
Values the documentation prints rounded are compared rounded the same way.
"""

from __future__ import annotations

import pytest
from test_metrics import MULTI_REFS, PREDS, REFS

from ftcli.evaluation.metrics import load_metric

# ---------------------------------------------------------------------------------------------------------
# bleu

HELLO = ["hello there general kenobi", "foo bar foobar"]


def _bleu(bleu, precisions, bp, ratio, translation_length, reference_length) -> dict:
    return {
        "bleu": bleu,
        "precisions": precisions,
        "brevity_penalty": bp,
        "length_ratio": ratio,
        "translation_length": translation_length,
        "reference_length": reference_length,
    }


DOCUMENTED_BLEU = [
    # metrics/bleu/README.md, "How to Use": the reference length is that of the *shortest* reference (6, not 7)
    (HELLO, [["hello there general kenobi", "hello there !"], ["foo bar foobar"]], {},
     _bleu(1.0, [1.0] * 4, 1.0, 1.1666666666666667, 7, 6)),
    # metrics/bleu/README.md, "Example where each prediction has 1 reference"
    (HELLO, [["hello there general kenobi"], ["foo bar foobar"]], {}, _bleu(1.0, [1.0] * 4, 1.0, 1.0, 7, 7)),
    # metrics/bleu/bleu.py docstring (it prints bleu only): 13a splits "there!" into "there" "!"
    (HELLO, [["hello there general kenobi", "hello there!"], ["foo bar foobar"]], {},
     _bleu(1.0, [1.0] * 4, 1.0, 1.1666666666666667, 7, 6)),
    # shenxiangzhuang/bleuscore, crates/bleuscore/src/bleu.rs test_bleu: the Hub metric's output for this
    # case, recorded there. smooth adds one to every order, unigrams too: (3+1)/(4+1) = 0.8.
    (["Yellow, World!"], [["Hello, World!"]], {"smooth": True},
     _bleu(0.668740304976422, [0.8, 0.75, 0.6666666666666666, 0.5], 1.0, 1.0, 4, 4)),
]  # fmt: skip

# HUB_RUN: the Hub bleu metric's own code run on PREDS / REFS of tests/test_metrics.py: evaluate main
# metrics/bleu/bleu.py with its tokenizer_13a.py, and tensorflow/nmt master (0be8642) nmt/scripts/bleu.py,
# which the Hub script downloads as its `nmt_bleu` module.
SHORT = [" ".join(p.split()[:5]) for p in PREDS]
HUB_RUN_BLEU = {
    "corpus": (PREDS, REFS, {},
               _bleu(0.3776894895802157, [0.6875, 0.4418604651162791, 0.3157894736842105, 0.21212121212121213],
                     1.0, 1.0909090909090908, 48, 44)),
    "two-references": (PREDS, MULTI_REFS, {},
                       _bleu(0.5894591983347142, [0.875, 0.7209302325581395, 0.5263157894736842, 0.36363636363636365],
                             1.0, 1.170731707317073, 48, 41)),
    "smooth": (PREDS, REFS, {"smooth": True},
               _bleu(0.39658610398650423, [0.6938775510204082, 0.45454545454545453, 0.3333333333333333,
                                           0.23529411764705882], 1.0, 1.0909090909090908, 48, 44)),
    # no matching 3-gram: 0 without smoothing (sacreBLEU's default exp smoothing would give 0.0986)
    "one-sentence": ([PREDS[1]], [REFS[1]], {}, _bleu(0.0, [0.5454545454545454, 0.1, 0.0, 0.0], 1.0, 1.375, 11, 8)),
    "one-sentence-smooth": ([PREDS[1]], [REFS[1]], {"smooth": True},
                            _bleu(0.18527972555830952, [0.5833333333333334, 0.18181818181818182, 0.1,
                                                        0.1111111111111111], 1.0, 1.375, 11, 8)),
    # shortest reference (3 tokens) where sacreBLEU takes the closest (7): no brevity penalty (sacreBLEU: 0.846)
    "shortest-reference": (["the cat sat on a mat"], [["the cat sat on the mat today", "a cat sat"]], {},
                           _bleu(0.5623413251903491, [1.0, 0.6, 0.5, 0.3333333333333333], 1.0, 2.0, 6, 3)),
    "brevity-penalty": (SHORT, REFS, {},
                        _bleu(0.2628126572742452, [0.68, 0.55, 0.5333333333333333, 0.5], 0.46766642700990935,
                              0.5681818181818182, 25, 44)),
    "whitespace-tokenizer": (PREDS, REFS, {"tokenizer": str.split},
                             _bleu(0.37844240585806915, [0.6428571428571429, 0.4594594594594595, 0.3125,
                                                         0.2222222222222222], 1.0, 1.105263157894737, 42, 38)),
    "max-order-2-smooth": (PREDS, REFS, {"max_order": 2, "smooth": True},
                           _bleu(0.5616038522192117, [0.6938775510204082, 0.45454545454545453], 1.0,
                                 1.0909090909090908, 48, 44)),
}  # fmt: skip


def _assert_same_bleu(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)  # the Hub metric's keys, in its order
    assert type(got["translation_length"]) is int and type(got["reference_length"]) is int
    got, expected = dict(got), dict(expected)
    assert got.pop("precisions") == pytest.approx(expected.pop("precisions"), rel=1e-12, abs=1e-15)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("preds, refs, kwargs, expected", DOCUMENTED_BLEU, ids=["readme", "one-ref", "doc", "smooth"])
def test_bleu_documented_examples(preds, refs, kwargs, expected):
    _assert_same_bleu(load_metric("bleu").compute(predictions=preds, references=refs, **kwargs), expected)


@pytest.mark.parametrize("case", sorted(HUB_RUN_BLEU))
def test_bleu_equals_the_hub_metric_run(case):
    preds, refs, kwargs, expected = HUB_RUN_BLEU[case]
    _assert_same_bleu(load_metric("bleu").compute(predictions=preds, references=refs, **kwargs), expected)


# ---------------------------------------------------------------------------------------------------------
# chrf

CATS = [
    "The relationship between cats and dogs is not exactly friendly.",
    "a good bookshop is just a genteel black hole that knows how to read.",
]
CATS_REFS = [
    ["The relationship between dogs and cats is not exactly friendly."],
    ["A good bookshop is just a genteel Black Hole that knows how to read."],
]


@pytest.mark.parametrize(
    "kwargs, expected",
    [  # metrics/chrf/chrf.py docstring, examples 1-3 (also in its README)
        ({}, {"score": 84.64214891738334, "char_order": 6, "word_order": 0, "beta": 2}),
        ({"word_order": 2}, {"score": 82.87263732906315, "char_order": 6, "word_order": 2, "beta": 2}),
        ({"word_order": 2, "lowercase": True}, {"score": 92.12853119829202, "char_order": 6, "word_order": 2, "beta": 2}),
    ],
)
def test_chrf_documented_examples(kwargs, expected):
    got = load_metric("chrf").compute(predictions=CATS, references=CATS_REFS, **kwargs)
    assert list(got) == list(expected) and got == pytest.approx(expected, rel=1e-12)


RISK = "risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."
RISK_REF = "risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."
OBAMA_REF = "Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."

# sacrebleu test/test_chrf.py (char_order=6, word_order=0, beta=3): test_cases (eps_smoothing=True),
# test_cases_effective_order (eps_smoothing=False), test_cases_keep_whitespace; compared to 1e-4 as there.
SACREBLEU_CHRF = [
    ([" " + RISK], [RISK_REF], {"eps_smoothing": True}, 63.361730),
    ([" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "], [OBAMA_REF],
     {"eps_smoothing": True}, 64.1302698),
    (["aa"], ["ab"], {"eps_smoothing": True}, 8.3333),
    (["a", "b"], ["a", "c"], {"eps_smoothing": True}, 8.3333),
    (["a"], ["a"], {"eps_smoothing": True}, 16.6667),
    (["a b c"], ["abc"], {"eps_smoothing": True}, 50.0),
    ([""], ["reference"], {"eps_smoothing": True}, 0.0),
    (["a"], ["a"], {}, 100.0),
    (["a", "b"], ["a", "c"], {}, 50.0),
    (["aa"], ["ab"], {}, 25.0),
    (["Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."], [OBAMA_REF],
     {"whitespace": True}, 67.3481606),
    ([RISK], [RISK_REF], {"whitespace": True}, 65.2414427),
]  # fmt: skip


@pytest.mark.parametrize("preds, refs, kwargs, expected", SACREBLEU_CHRF)
def test_chrf_sacrebleu_reference_values(preds, refs, kwargs, expected):
    got = load_metric("chrf").compute(predictions=preds, references=refs, beta=3, **kwargs)
    assert got["beta"] == 3 and abs(got["score"] - expected) < 1e-4


# ---------------------------------------------------------------------------------------------------------
# rouge


@pytest.mark.parametrize(
    "refs, kwargs, expected",
    [  # metrics/rouge/README.md, "How to Use" (the multi-reference values are printed to 4 digits there)
        (["hello there", "general kenobi"], {}, {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}),
        (["hello there", "general kenobi"], {"tokenizer": lambda x: x.split()},
         {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}),
        ([["hello", "there"], ["general kenobi", "general yoda"]], {},
         {"rouge1": 0.8333, "rouge2": 0.5, "rougeL": 0.8333, "rougeLsum": 0.8333}),
    ],
    ids=["same", "tokenizer", "multi-reference"],
)  # fmt: skip
def test_rouge_documented_examples(refs, kwargs, expected):
    got = load_metric("rouge").compute(predictions=["hello there", "general kenobi"], references=refs, **kwargs)
    assert list(got) == list(expected) and {k: round(v, 4) for k, v in got.items()} == expected


@pytest.mark.parametrize(
    "rouge_type, reference, prediction, fmeasure",
    [  # google-research rouge/rouge_scorer_test.py (scorer.score(target, prediction))
        ("rouge1", "testing one two", "testing", 1 / 2),  # testRouge1
        ("rouge2", "testing one two", "testing one", 2 / 3),  # testRouge2
        ("rougeL", "testing one two", "testing one", 4 / 5),  # testRougeLConsecutive
        ("rougeL", "testing one two", "testing two", 4 / 5),  # testRougeLNonConsecutive
        ("rougeLsum", "w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", 0.5333),  # testRougeLsum, 3 places
        ("rougeLsum", "w1 w2 w3 w4 w5", "/", 0.0),  # testRougeLsum: a summary of non-word characters only
        ("rouge2", "testing one two", "", 0.0),  # testRougeEmpty
    ],
)
def test_rouge_score_reference_values(rouge_type, reference, prediction, fmeasure):
    got = load_metric("rouge").compute(predictions=[prediction], references=[reference], rouge_types=[rouge_type])
    assert list(got) == [rouge_type] and got[rouge_type] == pytest.approx(fmeasure, abs=5e-4)


# ---------------------------------------------------------------------------------------------------------
# exact_match

EM_REFS = ["the cat", "theater", "YELLING", "agent007"]
EM_PREDS = ["cat?", "theater", "yelling", "agent"]
EM_OPTS = {"regexes_to_ignore": ["the ", "yell", "YELL"], "ignore_case": True, "ignore_punctuation": True}


@pytest.mark.parametrize(
    "preds, refs, kwargs, expected",
    [  # metrics/exact_match/exact_match.py docstring examples (printed rounded to 2 digits)
        (EM_PREDS, EM_REFS, {}, 0.25),
        (EM_PREDS, EM_REFS, {"regexes_to_ignore": ["the ", "yell"], "ignore_case": True, "ignore_punctuation": True}, 0.5),
        (EM_PREDS, EM_REFS, EM_OPTS, 0.75),
        (EM_PREDS, EM_REFS, {**EM_OPTS, "ignore_numbers": True}, 1.0),
        (["The cat sat on the mat?", "Theaters are great.", "It's like comparing apples and oranges."],
         ["The cat sat on the mat.", "Theaters are great.", "It's like comparing oranges and apples."], {}, 0.33),
    ],
)  # fmt: skip
def test_exact_match_documented_examples(preds, refs, kwargs, expected):
    got = load_metric("exact_match").compute(predictions=preds, references=refs, **kwargs)
    assert list(got) == ["exact_match"] and round(got["exact_match"], 2) == expected


# ---------------------------------------------------------------------------------------------------------
# classification: metrics/<name>/<name>.py docstring examples (printed rounded to 2 digits where rounded here)

BIN_REFS, BIN_PREDS = [0, 1, 0, 1, 0], [0, 0, 1, 1, 0]
MC_PREDS, MC_REFS = [0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2]
MLB_PREDS, MLB_REFS = [[0, 1, 1], [1, 1, 0]], [[0, 1, 1], [0, 1, 0]]
CLASSIFICATION_DOCS = [
    ("accuracy", None, [0, 1, 1, 2, 1, 0], [0, 1, 2, 0, 1, 2], {}, 0.5, None),
    ("accuracy", None, [0, 1, 1, 2, 1, 0], [0, 1, 2, 0, 1, 2], {"normalize": False}, 3.0, None),
    ("accuracy", None, [0, 1, 1, 2, 1, 0], [0, 1, 2, 0, 1, 2], {"sample_weight": [0.5, 2, 0.7, 0.5, 9, 0.4]},
     0.8778625954198473, None),
    # not in the docs: subset accuracy, one of the two label vectors right
    ("accuracy", "multilabel", MLB_PREDS, MLB_REFS, {}, 0.5, None),
    ("f1", None, BIN_PREDS, BIN_REFS, {}, 0.5, None),
    ("f1", None, BIN_PREDS, BIN_REFS, {"pos_label": 0}, 0.67, 2),
    ("f1", None, BIN_PREDS, BIN_REFS, {"sample_weight": [0.9, 0.5, 3.9, 1.2, 0.3]}, 0.35, 2),
    ("f1", None, MC_PREDS, MC_REFS, {"average": "macro"}, 0.27, 2),
    ("f1", None, MC_PREDS, MC_REFS, {"average": "micro"}, 0.33, 2),
    ("f1", None, MC_PREDS, MC_REFS, {"average": "weighted"}, 0.27, 2),
    ("f1", None, MC_PREDS, MC_REFS, {"average": None}, [0.8, 0.0, 0.0], None),
    ("f1", "multilabel", MLB_PREDS, MLB_REFS, {"average": "macro"}, 0.67, 2),
    ("precision", None, BIN_PREDS, BIN_REFS, {}, 0.5, None),
    ("precision", None, BIN_PREDS, BIN_REFS, {"pos_label": 0}, 0.67, 2),
    ("precision", None, BIN_PREDS, BIN_REFS, {"sample_weight": [0.9, 0.5, 3.9, 1.2, 0.3]}, 0.23529411764705882, None),
    ("precision", None, MC_PREDS, MC_REFS, {"average": "macro"}, 0.2222222222222222, None),
    ("precision", None, MC_PREDS, MC_REFS, {"average": "micro"}, 0.3333333333333333, None),
    ("precision", None, MC_PREDS, MC_REFS, {"average": "weighted"}, 0.2222222222222222, None),
    ("precision", None, MC_PREDS, MC_REFS, {"average": None}, [0.67, 0.0, 0.0], 2),
    ("recall", None, [0, 1, 0, 1, 1], [0, 0, 1, 1, 1], {}, 0.6666666666666666, None),
    ("recall", None, [0, 1, 0, 1, 1], [0, 0, 1, 1, 1], {"pos_label": 0}, 0.5, None),
    ("recall", None, [0, 1, 0, 1, 1], [0, 0, 1, 1, 1], {"sample_weight": [0.9, 0.2, 0.9, 0.3, 0.8]}, 0.55, None),
    ("recall", None, MC_PREDS, MC_REFS, {"average": "macro"}, 0.3333333333333333, None),
    ("recall", None, MC_PREDS, MC_REFS, {"average": "micro"}, 0.3333333333333333, None),
    ("recall", None, MC_PREDS, MC_REFS, {"average": "weighted"}, 0.3333333333333333, None),
    ("recall", None, MC_PREDS, MC_REFS, {"average": None}, [1.0, 0.0, 0.0], None),
    ("matthews_correlation", None, [1, 2, 2, 0, 3, 3], [1, 3, 2, 0, 3, 2], {}, 0.54, 2),
    ("matthews_correlation", None, [1, 2, 2, 0, 3, 3], [1, 3, 2, 0, 3, 2], {"sample_weight": [0.5, 3, 1, 1, 1, 2]}, 0.1, 2),
    ("matthews_correlation", None, [1, 2, 2, 0, 3, 3], [1, 3, 2, 0, 3, 2], {"sample_weight": [0.5, 1, 0, 0, 0, 1]}, -0.25, 2),
    ("matthews_correlation", "multilabel", [[0, 1], [1, 1], [0, 1]], [[0, 1], [1, 0], [1, 1]], {}, [0.5, 0.0], None),
    ("matthews_correlation", "multilabel", [[0, 1], [1, 1], [0, 1]], [[0, 1], [1, 0], [1, 1]], {"average": "macro"},
     0.25, 2),
]  # fmt: skip


def _rounded(value, digits):
    if digits is None:
        return value
    return [round(v, digits) for v in value] if isinstance(value, list) else round(value, digits)


@pytest.mark.parametrize("name, config, preds, refs, kwargs, expected, digits", CLASSIFICATION_DOCS)
def test_classification_documented_examples(name, config, preds, refs, kwargs, expected, digits):
    metric = load_metric(name) if config is None else load_metric(name, config_name=config)
    got = metric.compute(predictions=preds, references=refs, **kwargs)
    assert list(got) == [name]
    assert _rounded(got[name], digits) == pytest.approx(expected, rel=1e-12)


def test_multilabel_mcc_rejects_other_averages():
    metric = load_metric("matthews_correlation", config_name="multilabel")
    with pytest.raises(ValueError, match="average"):
        metric.compute(predictions=[[0, 1], [1, 1]], references=[[0, 1], [1, 0]], average="micro")
    # the plain config ignores `average`, as the Hub metric does
    plain = load_metric("matthews_correlation").compute(predictions=[1, 0, 1], references=[1, 0, 0], average="macro")
    assert plain["matthews_correlation"] == pytest.approx(0.5)
