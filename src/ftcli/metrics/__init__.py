"""Evaluation metrics that work offline.

`evaluate.load("accuracy")` downloads the metric script from the Hugging Face Hub, so it fails without
network. ftcli bundles its own metric modules (one folder per metric, `<name>/<name>.py`, as
`evaluate.load(<local dir>)` expects) and loads them from disk. Names that are not bundled fall back to the
Hub. `evaluate` is imported lazily: importing it pulls in transformers and takes seconds.
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
        if name in out:
            value = out[name]
        elif len(out) == 1:
            value = next(iter(out.values()))
        else:
            raise ValueError(f"metric '{name}' returned several values {sorted(out)}; cannot pick one")
        results[name] = float(value)
    return results
