"""Bundled `evaluate` metric modules: they load offline and agree with scikit-learn."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from sklearn import metrics as skm

import ftcli.metrics as fm
from ftcli.metrics import (
    METRIC_DIR,
    available_metrics,
    compute_classification_metrics,
    load_metric,
)

BUNDLED = ["accuracy", "f1", "matthews_correlation", "precision", "recall"]
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


@pytest.mark.parametrize("name", BUNDLED)
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
    out = compute_classification_metrics(BUNDLED, preds, refs, num_labels=2)
    assert list(out) == BUNDLED and all(type(v) is float for v in out.values())
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
