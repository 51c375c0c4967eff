"""Evaluation metrics that work offline.

`evaluate.load("accuracy")` downloads the metric script from the Hugging Face Hub, so it fails without
network. ftcli bundles its own metric modules (one folder per metric, `<name>/<name>.py`, as
`evaluate.load(<local dir>)` expects) and loads them from disk. Names that are not bundled fall back to the
Hub. `evaluate` is imported lazily: importing it pulls in transformers and takes seconds.

Bundled: classification (accuracy, f1, precision, recall, matthews_correlation: scikit-learn, each also as
the "multilabel" config) and text (exact_match; bleu: the TensorFlow NMT BLEU over the 13a tokenizer; chrf:
sacrebleu; rouge: rouge-score). A bundled metric gives the numbers of the Hub metric of the same name, with
its `compute()` arguments, defaults and result keys (bleu in [0, 1] under "bleu", chrf in [0, 100] under
"score", ...). The few deliberate differences (inputs the Hub metric rejects or crashes on; rouge's mean
where the Hub's is a random bootstrap estimate of it) are listed in each script's docstring.

How evaluate loads a local module, which the scripts must respect:
- it copies only `<name>/<name>.py` into its modules cache and imports it from there, so a script cannot
  use relative imports; shared code lives in this package (`_base.py`, `_sklearn.py`, `_text.py`) and is
  imported absolutely (`from ftcli.evaluation.metrics._text import ...`), which evaluate accepts as a library import
  once `import ftcli` works;
- it instantiates the first non-abstract `evaluate.EvaluationModule` subclass in the script's namespace,
  imported names included, so shared code provides mixins, never EvaluationModule subclasses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

METRIC_DIR = Path(__file__).resolve().parent

# Metrics whose score depends on how per-class scores are averaged.
_AVERAGED = ("f1", "precision", "recall")
_TRUE = {"1", "ON", "YES", "TRUE"}

_cache: dict[tuple[str, str], Any] = {}


def available_metrics() -> list[str]:
    """Names of the metric modules bundled with ftcli, sorted."""
    return sorted(p.name for p in METRIC_DIR.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


def load_metric(name: str, **kwargs: Any):
    """Load metric `name` as an `evaluate.EvaluationModule`.

    Bundled metrics are loaded from this package's folder (no network). Any other name is passed to
    `evaluate.load` (a Hub id or a local path); a failure there raises ValueError. `kwargs` go to
    `evaluate.load`; `keep_in_memory` defaults to True (no cache files) unless `num_process` > 1.
    Loaded modules are cached per (name, kwargs).
    """
    if kwargs.get("num_process", 1) == 1:
        kwargs.setdefault("keep_in_memory", True)
    key = (name, repr(sorted(kwargs.items())))
    if key in _cache:
        return _cache[key]

    import evaluate

    bundled = available_metrics()
    if name in bundled:
        module = evaluate.load(str(METRIC_DIR / name), **kwargs)
    else:
        # evaluate reads its offline flag (HF_EVALUATE_OFFLINE) once, at import; also honour HF_HUB_OFFLINE
        # set later, so an offline run fails at once (or loads a cached copy) instead of trying the network.
        saved = evaluate.config.HF_EVALUATE_OFFLINE
        if _hub_offline():
            evaluate.config.HF_EVALUATE_OFFLINE = True
        try:
            module = evaluate.load(name, **kwargs)
        except Exception as e:  # evaluate raises FileNotFoundError, ConnectionError, ImportError, ...
            reason = f"{type(e).__name__}: {e}"
            raise ValueError(
                f"metric '{name}' is not bundled with ftcli (bundled: {', '.join(bundled)}) "
                f"and could not be loaded from the Hugging Face Hub: {reason}"
            ) from e
        finally:
            evaluate.config.HF_EVALUATE_OFFLINE = saved
    _cache[key] = module
    return module


def compute_classification_metrics(
    names: Iterable[str], predictions: Sequence[int], references: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Compute each metric in `names` on integer class predictions; returns {name: float}.

    f1/precision/recall use average="binary" (positive class 1) when num_labels == 2, "macro" otherwise;
    undefined scores (e.g. a class never predicted) count as 0 without warning.
    """
    import numpy as np

    if num_labels < 2:
        raise ValueError(f"classification metrics need num_labels >= 2, got {num_labels}")
    predictions = np.asarray(predictions).tolist()
    references = np.asarray(references).tolist()
    results: dict[str, float] = {}
    for name in names:
        kwargs: dict[str, Any] = {}
        if name in _AVERAGED:
            kwargs = {"average": "binary" if num_labels == 2 else "macro", "zero_division": 0}
        out = load_metric(name).compute(predictions=predictions, references=references, **kwargs)
        results[name] = _single_value(name, out)
    return results


def _single_value(name: str, out: dict[str, Any]) -> float:
    """The score of metric `name` from its compute() result: out[name], else out["score"] (the Hub's chrf,
    sacrebleu and ter return their score under "score", next to their settings), or the only value there is."""
    if name in out:
        value = out[name]
    elif "score" in out:
        value = out["score"]
    elif len(out) == 1:
        value = next(iter(out.values()))
    else:
        raise ValueError(f"metric '{name}' returned several values {sorted(out)}; cannot pick one")
    return float(value)


# ROUGE variants compute_text_metrics accepts as names; "rouge" stands for the first three.
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_ROUGE_DEFAULT = ("rouge1", "rouge2", "rougeL")


def compute_text_metrics(
    names: Iterable[str], predictions: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
) -> dict[str, float]:
    """Compute each text metric in `names` on generated texts; returns {key: float}.

    exact_match -> "exact_match" (fraction in [0, 1]); bleu -> "bleu" (corpus BLEU in [0, 1]); chrf -> "chrf"
    (0-100); rouge -> "rouge1", "rouge2", "rougeL" (mean F-measures in [0, 1]); "rouge1", "rouge2", "rougeL"
    and "rougeLsum" may also be named alone. Any other name is loaded with `load_metric` and must return one
    value. `references` holds one string per prediction (or, except for exact_match, a list of them).
    Keys come in the order of `names`; all ROUGE scores come from one pass.
    """
    names = list(names)
    predictions = list(predictions)
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("text metrics need at least one prediction")

    # Expand names into result keys, in order and without repeats.
    keys: list[str] = []
    for name in names:
        for key in _ROUGE_DEFAULT if name == "rouge" else (name,):
            if key not in keys:
                keys.append(key)
    rouge_types = [k for k in keys if k in ROUGE_KEYS]
    rouge = {}
    if rouge_types:
        out = load_metric("rouge").compute(predictions=predictions, references=references, rouge_types=rouge_types)
        rouge = {k: float(out[k]) for k in rouge_types}

    results: dict[str, float] = {}
    for key in keys:
        if key in rouge:
            results[key] = rouge[key]
        else:
            out = load_metric(key).compute(predictions=predictions, references=references)
            results[key] = _single_value(key, out)
    return results
