"""Bundled `evaluate` metric modules: they load offline and agree with scikit-learn, sacrebleu, rouge-score.

The Hub metrics' own reference numbers are checked in tests/test_metrics_hub.py."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics as skm

import ftcli.evaluation.metrics as fm
from ftcli.evaluation.metrics import METRIC_DIR, available_metrics, compute_classification_metrics, compute_text_metrics, load_metric

CLASSIFICATION = ["accuracy", "f1", "matthews_correlation", "precision", "recall"]
TEXT = ["bleu", "chrf", "exact_match", "rouge"]
BUNDLED = sorted(CLASSIFICATION + TEXT)
# The class evaluate.load must pick from each script (the first EvaluationModule subclass in its namespace).
MAIN_CLASS = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "matthews_correlation": "MatthewsCorrelation",
    "precision": "Precision",
    "recall": "Recall",
    "bleu": "Bleu",
    "chrf": "Chrf",
    "exact_match": "ExactMatch",
    "rouge": "Rouge",
}
SKLEARN_AVERAGED = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}


def _noisy_labels(num_labels: int, n: int = 300, seed: int = 0):
    """References plus predictions that are right ~60% of the time (others random): imbalanced, non-trivial."""
    rng = np.random.default_rng(seed)
    p = np.linspace(1.0, 2.0, num_labels)
    refs = rng.choice(num_labels, size=n, p=p / p.sum())
    preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, num_labels, n))
    weights = rng.uniform(0.1, 2.0, n)
    return preds, refs, weights


BINARY = _noisy_labels(2, seed=1)
MULTI = _noisy_labels(4, seed=2)


@pytest.fixture
def no_network(monkeypatch):
    """HF_HUB_OFFLINE=1, and any name lookup or socket connection attempt is recorded and refused."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: refuse(None, host))
    return attempts


def test_available_metrics_are_module_folders():
    assert available_metrics() == BUNDLED
    for name in BUNDLED:
        # evaluate.load(<dir>) looks for <dir>/<basename of dir>.py
        assert (METRIC_DIR / name / f"{name}.py").is_file()


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_bundled_metric_loads_offline(name, no_network, monkeypatch):
    import evaluate

    monkeypatch.setattr(fm, "_cache", {})  # force a real evaluate.load, not our in-process cache
    module = load_metric(name)
    assert isinstance(module, evaluate.EvaluationModule)
    assert module.name == name
    assert set(module.features) == {"predictions", "references"}
    assert module.description.strip() and module.citation.strip() and module.inputs_description.strip()
    assert load_metric(name) is module  # cached per name
    out = module.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    assert list(out) == [name] and isinstance(out[name], float)
    assert no_network == []


@pytest.mark.parametrize("data", [BINARY, MULTI], ids=["binary", "4-class"])
@pytest.mark.parametrize("average", ["binary", "macro", "micro", "weighted", None])
@pytest.mark.parametrize("name", sorted(SKLEARN_AVERAGED))
def test_averaged_metrics_match_sklearn(name, average, data):
    preds, refs, _ = data
    if average == "binary" and data is MULTI:
        with pytest.raises(ValueError):  # sklearn refuses binary averaging of 4 classes; so must we
            load_metric(name).compute(predictions=preds, references=refs, average=average)
        return
    expected = SKLEARN_AVERAGED[name](refs, preds, average=average)
    got = load_metric(name).compute(predictions=preds, references=refs, average=average)[name]
    if average is None:
        assert isinstance(got, list) and len(got) == len(np.unique(refs))
        assert all(type(g) is float for g in got)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    else:
        assert type(got) is float
        assert got == pytest.approx(float(expected), rel=1e-12)
        assert 0.2 < got < 0.95  # the example is neither trivial nor degenerate


@pytest.mark.parametrize("name", sorted(SKLEARN_AVERAGED))
def test_averaged_metrics_pass_labels_pos_label_and_weights(name):
    fn = SKLEARN_AVERAGED[name]
    preds, refs, w = BINARY
    metric = load_metric(name)
    got = metric.compute(predictions=preds, references=refs, pos_label=0)[name]
    assert got == pytest.approx(fn(refs, preds, pos_label=0))
    assert got != pytest.approx(fn(refs, preds, pos_label=1))
    got = metric.compute(predictions=preds, references=refs, sample_weight=w)[name]
    assert got == pytest.approx(fn(refs, preds, sample_weight=w))
    assert got != pytest.approx(fn(refs, preds))

    preds, refs, w = MULTI
    got = metric.compute(predictions=preds, references=refs, average="macro", labels=[1, 3])[name]
    assert got == pytest.approx(fn(refs, preds, average="macro", labels=[1, 3]))
    assert got != pytest.approx(fn(refs, preds, average="macro"))
    got = metric.compute(predictions=preds, references=refs, average=None, labels=[3, 0])[name]
    np.testing.assert_allclose(got, fn(refs, preds, average=None, labels=[3, 0]))
    got = metric.compute(predictions=preds, references=refs, average="weighted", sample_weight=w)[name]
    assert got == pytest.approx(fn(refs, preds, average="weighted", sample_weight=w))


@pytest.mark.parametrize("data", [BINARY, MULTI], ids=["binary", "4-class"])
def test_accuracy_and_mcc_match_sklearn(data):
    preds, refs, w = data
    acc, mcc = load_metric("accuracy"), load_metric("matthews_correlation")
    got = acc.compute(predictions=preds, references=refs)["accuracy"]
    assert type(got) is float and got == pytest.approx(skm.accuracy_score(refs, preds))
    assert 0.5 < got < 0.95
    got = acc.compute(predictions=preds, references=refs, normalize=False)["accuracy"]
    assert got == int((preds == refs).sum())
    got = acc.compute(predictions=preds, references=refs, sample_weight=w)["accuracy"]
    assert got == pytest.approx(skm.accuracy_score(refs, preds, sample_weight=w))
    got = mcc.compute(predictions=preds, references=refs)["matthews_correlation"]
    assert type(got) is float and got == pytest.approx(skm.matthews_corrcoef(refs, preds))
    assert 0.2 < got < 0.95
    got = mcc.compute(predictions=preds, references=refs, sample_weight=w)["matthews_correlation"]
    assert got == pytest.approx(skm.matthews_corrcoef(refs, preds, sample_weight=w))


def test_compute_classification_metrics_binary_uses_binary_average():
    preds, refs, _ = BINARY
    out = compute_classification_metrics(CLASSIFICATION, preds, refs, num_labels=2)
    assert list(out) == CLASSIFICATION and all(type(v) is float for v in out.values())
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(refs, preds))
    assert out["matthews_correlation"] == pytest.approx(skm.matthews_corrcoef(refs, preds))
    for name, fn in SKLEARN_AVERAGED.items():
        assert out[name] == pytest.approx(fn(refs, preds, average="binary"))
        assert out[name] != pytest.approx(fn(refs, preds, average="macro"))


def test_compute_classification_metrics_multiclass_uses_macro_average():
    preds, refs, _ = MULTI
    out = compute_classification_metrics(["f1", "precision", "recall"], list(preds), list(refs), num_labels=4)
    assert list(out) == ["f1", "precision", "recall"]
    for name, fn in SKLEARN_AVERAGED.items():
        assert out[name] == pytest.approx(fn(refs, preds, average="macro"))
        assert out[name] != pytest.approx(fn(refs, preds, average="weighted"))


def test_compute_classification_metrics_silent_when_a_class_is_never_predicted(recwarn):
    refs = [0, 1, 2, 3, 0, 1, 2, 3]
    preds = [0, 1, 2, 2, 0, 1, 2, 2]  # class 3 never predicted: its precision is undefined -> 0
    out = compute_classification_metrics(["precision"], preds, refs, num_labels=4)
    assert out["precision"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert not [w for w in recwarn if "UndefinedMetric" in type(w.message).__name__]


def test_unknown_metric_without_hub_raises_value_error(no_network):
    import evaluate

    before = evaluate.config.HF_EVALUATE_OFFLINE
    with pytest.raises(ValueError, match=r"metric 'no_such_metric_xyz' is not bundled with ftcli") as info:
        load_metric("no_such_metric_xyz")
    assert "accuracy" in str(info.value)  # lists what is bundled
    assert "Hugging Face Hub" in str(info.value)
    assert evaluate.config.HF_EVALUATE_OFFLINE == before  # our temporary offline switch is undone
    assert no_network == []  # HF_HUB_OFFLINE=1 is honoured: no connection attempt
    assert not any(key[0] == "no_such_metric_xyz" for key in fm._cache)


# ---------------------------------------------------------------------------------------------------------
# How evaluate picks the class from each script, and the shared scaffolding modules.


def test_evaluate_picks_each_scripts_own_class():
    """evaluate.load takes the first EvaluationModule subclass in a script's namespace; the scripts import
    mixins from ftcli.evaluation.metrics._sklearn / _text by name, so those must never be EvaluationModule subclasses."""
    import evaluate

    from ftcli.evaluation.metrics import _base, _sklearn, _text

    for helper in (_base, _sklearn, _text):
        for obj in vars(helper).values():
            assert not (isinstance(obj, type) and issubclass(obj, evaluate.EvaluationModule)), obj
    for name in BUNDLED:
        module = load_metric(name)
        assert type(module).__name__ == MAIN_CLASS[name]
        assert module.name == name
        assert isinstance(module, _sklearn.SklearnMetric) == (name in CLASSIFICATION)
        assert isinstance(module, _text.TextMetric) == (name in TEXT)
        # the mixin's class attributes do not shadow EvaluationModule's description/citation properties
        assert module.description == module._module_info.description
        assert module.citation == module._module_info.citation


# ---------------------------------------------------------------------------------------------------------
# Text metrics.

PREDS = [
    "The quick brown fox jumps over the lazy dog.",
    "A MAN is playing a guitar on the stage tonight.",
    "Paris is the capital of France.",
    "The results were published in 2021, two years later.",
    "She sells sea shells by the sea shore.",
]
REFS = [
    "The quick brown fox jumped over the lazy dogs.",
    "A man plays the guitar on stage.",
    "Paris is the capital of France.",
    "The results were published in 2019, two years earlier.",
    "She sold seashells down by the seashore!",
]
REFS2 = [
    "A fast brown fox leaps over a lazy dog.",
    "A man is playing guitar on the stage.",
    "The capital of France is Paris.",
    "Results appeared in 2021, two years later.",
    "She sells shells by the shore.",
]
MULTI_REFS = [[a, b] for a, b in zip(REFS, REFS2)]


@pytest.fixture
def no_nltk_download(monkeypatch):
    """Any nltk data download is recorded and refused."""
    import nltk

    calls = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise RuntimeError("nltk.download called")

    monkeypatch.setattr(nltk, "download", refuse)
    return calls


@pytest.mark.parametrize("name", TEXT)
def test_text_metric_loads_offline(name, no_network, no_nltk_download, monkeypatch):
    import evaluate

    monkeypatch.setattr(fm, "_cache", {})  # force a real evaluate.load
    module = load_metric(name)
    assert isinstance(module, evaluate.EvaluationModule) and module.name == name
    assert module.description.strip() and module.citation.strip() and module.inputs_description.strip()
    out = module.compute(predictions=PREDS, references=REFS)
    key = {"rouge": "rouge1", "chrf": "score"}.get(name, name)  # the Hub metrics' score keys
    assert type(out[key]) is float
    assert no_network == [] and no_nltk_download == []


EM_PREDS = ["Paris", "the answer is 42.", "New York!", "Ottawa", "1984", "cat"]
EM_REFS = ["paris", "The answer is 41", "New York", "Ottawa", "  1984", "dog"]


@pytest.mark.parametrize(
    "kwargs, matches",
    [
        ({}, ["Ottawa"]),
        ({"ignore_case": True}, ["Paris", "Ottawa"]),
        ({"ignore_punctuation": True}, ["New York", "Ottawa"]),
        ({"ignore_numbers": True}, ["Ottawa"]),
        ({"ignore_case": True, "ignore_punctuation": True, "ignore_numbers": True}, ["Paris", "answer", "NY", "Ottawa"]),
        ({"regexes_to_ignore": [r"^\s+", r"\d+"]}, ["Ottawa", "1984"]),
        ({"regexes_to_ignore": r"^\s+"}, ["Ottawa", "1984"]),  # one regex as a plain string
        (
            {"regexes_to_ignore": [r"^\s+", r"\d+"], "ignore_case": True, "ignore_punctuation": True},
            ["Paris", "answer", "NY", "Ottawa", "1984"],
        ),
        # regexes run before case folding: "[A-Z]" deletes the capitals of the references only
        ({"regexes_to_ignore": ["[A-Z]"], "ignore_case": True}, ["Ottawa"]),
    ],
)
def test_exact_match_options(kwargs, matches):
    got = load_metric("exact_match").compute(predictions=EM_PREDS, references=EM_REFS, **kwargs)
    assert list(got) == ["exact_match"] and type(got["exact_match"]) is float
    assert got["exact_match"] == pytest.approx(len(matches) / len(EM_PREDS))


def test_exact_match_on_sentences():
    got = load_metric("exact_match").compute(predictions=PREDS, references=REFS)["exact_match"]
    assert got == pytest.approx(1 / 5)  # only the Paris sentence is identical


# The Hub bleu metric's numbers on PREDS / REFS, reference values in tests/test_metrics_hub.py.
HUB_BLEU_ON_PREDS = 0.3776894895802157


def test_bleu_13a_tokenizer_pinned():
    """The one private use of sacrebleu (its 13a tokenizer module) still splits as the Hub bleu metric's copy
    of it does (evaluate metrics/bleu/tokenizer_13a.py): unescapes &quot; &amp; ..., drops <skipped>, joins
    a hyphen at a line end, splits punctuation off words, keeps "3.5" and "10,000" whole but splits "1-2"."""
    from ftcli.evaluation.metrics._bleu import tokenize_13a

    text = 'He said &quot;3.5 km&quot; (approx.), i.e. 1-2 hours-\nlater <skipped>& more: 10,000 $\u00fc!'
    assert tokenize_13a(text) == [
        "He", "said", '"', "3.5", "km", '"', "(", "approx", ".", ")", ",", "i", ".", "e", ".", "1", "-", "2",
        "hourslater", "&", "more", ":", "10,000", "$", "\u00fc", "!",
    ]  # fmt: skip


def test_bleu_takes_the_hub_arguments_only():
    bleu = load_metric("bleu")
    out = bleu.compute(predictions=PREDS, references=REFS)
    assert list(out) == ["bleu", "precisions", "brevity_penalty", "length_ratio", "translation_length", "reference_length"]
    assert type(out["bleu"]) is float and out["bleu"] == pytest.approx(HUB_BLEU_ON_PREDS, rel=1e-12)
    assert type(out["translation_length"]) is int and len(out["precisions"]) == 4
    for sacrebleu_only in ({"smooth_method": "exp"}, {"tokenize": "char"}, {"lowercase": True}):
        with pytest.raises(TypeError):  # as the Hub metric: sacreBLEU's options belong to its "sacrebleu" metric
            bleu.compute(predictions=PREDS, references=REFS, **sacrebleu_only)
    with pytest.raises(ValueError, match="max_order"):
        bleu.compute(predictions=PREDS, references=REFS, max_order=0)


def test_bleu_empty_prediction_scores_zero():
    """The Hub metric divides by zero when no prediction has a token; here BLEU is 0 (and so is the penalty)."""
    bleu = load_metric("bleu")
    for preds in ([""], ["", " <skipped> "]):
        out = bleu.compute(predictions=preds, references=REFS[: len(preds)])
        assert out["bleu"] == 0.0 and out["brevity_penalty"] == 0.0 and out["length_ratio"] == 0.0
        assert out["translation_length"] == 0 and out["reference_length"] > 0
    out = bleu.compute(predictions=["a b c d e"], references=[""], smooth=True)  # no reference token either
    assert out["bleu"] == 0.0 and out["reference_length"] == 0


def test_bleu_custom_tokenizer_and_ragged_references():
    bleu = load_metric("bleu")
    spaces = bleu.compute(predictions=PREDS, references=REFS, tokenizer=str.split)
    assert spaces["translation_length"] == sum(len(p.split()) for p in PREDS)
    assert spaces["bleu"] != pytest.approx(HUB_BLEU_ON_PREDS)
    # a varying number of references: the same as repeating a lone reference (a duplicate changes nothing)
    ragged = [[REFS[0]]] + MULTI_REFS[1:]
    assert bleu.compute(predictions=PREDS, references=ragged) == bleu.compute(
        predictions=PREDS, references=[[REFS[0], REFS[0]]] + MULTI_REFS[1:]
    )
    with pytest.raises(ValueError, match="at least one reference"):
        bleu.compute(predictions=PREDS[:2], references=[[REFS[0]], []])


CHRF_KEYS = ["score", "char_order", "word_order", "beta"]


@pytest.mark.parametrize(
    "kwargs", [{}, {"word_order": 2}, {"char_order": 4, "beta": 1}], ids=["chrF", "chrF++", "order4-beta1"]
)
def test_chrf_matches_sacrebleu(kwargs):
    got = load_metric("chrf").compute(predictions=PREDS, references=REFS, **kwargs)
    assert list(got) == CHRF_KEYS and type(got["score"]) is float  # the Hub chrf metric's result keys
    settings = {"char_order": 6, "word_order": 0, "beta": 2, **kwargs}
    assert {k: got[k] for k in CHRF_KEYS[1:]} == settings
    assert got["score"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS], **kwargs).score, rel=1e-12)
    assert 30 < got["score"] < 95  # sacrebleu's 0-100 scale, non-trivial
    got = load_metric("chrf").compute(predictions=PREDS, references=MULTI_REFS, **kwargs)["score"]
    assert got == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS, REFS2], **kwargs).score, rel=1e-12)


def test_chrf_lowercase_and_ragged_references():
    chrf = load_metric("chrf")
    upper = [p.upper() for p in PREDS]
    got = chrf.compute(predictions=upper, references=REFS, lowercase=True)["score"]
    lowered = sacrebleu.corpus_chrf([p.lower() for p in upper], [[r.lower() for r in REFS]]).score
    assert got == pytest.approx(lowered, rel=1e-12)
    assert got > chrf.compute(predictions=upper, references=REFS)["score"] + 20
    # the Hub metric refuses a varying number of references; here a lone one counts as if repeated
    ragged = chrf.compute(predictions=PREDS, references=[[REFS[0]]] + MULTI_REFS[1:])["score"]
    assert ragged == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS, [REFS[0]] + REFS2[1:]]).score, rel=1e-12)


ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
# rougeLsum splits on newlines: give some texts several lines so that it differs from rougeL
SUMMARY_PREDS = PREDS[:3] + ["The results were published in 2021.\nThat was two years later.", PREDS[4]]
SUMMARY_REFS = REFS[:3] + ["That was two years earlier.\nThe results were published in 2019.", REFS[4]]


def _rouge_per_example(preds, refs, types=ROUGE_TYPES, use_stemmer=False, multi=False):
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    scores = [scorer.score_multi(r, p) if multi else scorer.score(r, p) for p, r in zip(preds, refs)]
    return {t: [s[t].fmeasure for s in scores] for t in types}


@pytest.mark.parametrize("use_stemmer", [False, True], ids=["plain", "stemmed"])
def test_rouge_matches_rouge_score(use_stemmer):
    rouge = load_metric("rouge")
    expected = _rouge_per_example(SUMMARY_PREDS, SUMMARY_REFS, use_stemmer=use_stemmer)
    got = rouge.compute(predictions=SUMMARY_PREDS, references=SUMMARY_REFS, use_stemmer=use_stemmer)
    assert list(got) == ROUGE_TYPES and all(type(v) is float for v in got.values())
    for t in ROUGE_TYPES:
        assert got[t] == pytest.approx(float(np.mean(expected[t])), rel=1e-12)
        assert 0.3 < got[t] < 0.95
    assert got["rougeLsum"] != pytest.approx(got["rougeL"])

    per = rouge.compute(
        predictions=SUMMARY_PREDS, references=SUMMARY_REFS, use_stemmer=use_stemmer, use_aggregator=False
    )
    assert list(per) == ROUGE_TYPES
    for t in ROUGE_TYPES:
        assert all(type(v) is float for v in per[t])
        np.testing.assert_allclose(per[t], expected[t], rtol=1e-12)


def test_rouge_stemmer_types_and_multiple_references():
    rouge = load_metric("rouge")
    plain = rouge.compute(predictions=PREDS, references=REFS, rouge_types=["rouge1"])
    stemmed = rouge.compute(predictions=PREDS, references=REFS, rouge_types=["rouge1"], use_stemmer=True)
    assert list(plain) == ["rouge1"] and stemmed["rouge1"] > plain["rouge1"]  # jumps/jumped, dog/dogs ...

    got = rouge.compute(predictions=PREDS, references=MULTI_REFS, rouge_types=["rouge2", "rougeL"])
    expected = _rouge_per_example(PREDS, MULTI_REFS, types=["rouge2", "rougeL"], multi=True)
    assert got == pytest.approx({t: float(np.mean(v)) for t, v in expected.items()}, rel=1e-12)

    got = rouge.compute(predictions=PREDS, references=REFS, rouge_types=["rouge1"], tokenizer=str.split)
    scorer = rouge_scorer.RougeScorer(["rouge1"], tokenizer=type("T", (), {"tokenize": staticmethod(str.split)}))
    expected = np.mean([scorer.score(r, p)["rouge1"].fmeasure for p, r in zip(PREDS, REFS)])
    assert got["rouge1"] == pytest.approx(float(expected)) and got["rouge1"] != pytest.approx(plain["rouge1"])


def test_compute_text_metrics_keys_and_values(no_network, no_nltk_download):
    out = compute_text_metrics(["exact_match", "bleu", "chrf", "rouge"], PREDS, REFS)
    assert list(out) == ["exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL"]
    assert all(type(v) is float for v in out.values())
    assert out["exact_match"] == pytest.approx(1 / 5)
    assert out["bleu"] == pytest.approx(HUB_BLEU_ON_PREDS, rel=1e-12)
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score)
    expected = _rouge_per_example(PREDS, REFS)
    for t in ["rouge1", "rouge2", "rougeL"]:
        assert out[t] == pytest.approx(float(np.mean(expected[t])))

    # individual ROUGE names, in the order given; repeats collapse
    out2 = compute_text_metrics(["rougeL", "bleu", "rouge1", "rougeL"], PREDS, REFS)
    assert list(out2) == ["rougeL", "bleu", "rouge1"]
    assert out2 == pytest.approx({k: out[k] for k in out2})
    assert list(compute_text_metrics(["rouge2"], PREDS, MULTI_REFS)) == ["rouge2"]
    assert no_network == [] and no_nltk_download == []


def test_compute_text_metrics_rejects_bad_input(no_network):
    with pytest.raises(ValueError, match="5 predictions but 4 references"):
        compute_text_metrics(["bleu"], PREDS, REFS[:4])
    with pytest.raises(ValueError, match="at least one prediction"):
        compute_text_metrics(["bleu"], [], [])
    with pytest.raises(ValueError, match="not bundled with ftcli"):
        compute_text_metrics(["no_such_text_metric_xyz"], PREDS, REFS)
    assert no_network == []
