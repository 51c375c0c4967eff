"""What a finished run records for its report beside Trainer's metrics: the log history (history.json:
checkpoints, where trainer_state.json lives, are pruned or deleted), the training examples' length
histogram, and the environment it trained in."""

from __future__ import annotations

import platform
from pathlib import Path

from ftcli import runs
from ftcli.data.preview import example_length
from ftcli.io import write_json
from ftcli.reporting.history import length_histogram
from ftcli.versions import package_versions

_PACKAGES = ("ftcli", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers",
             "bitsandbytes", "deepspeed", "liger-kernel")


def _device_name(device: str) -> str | None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or None


def environment(device: str) -> dict:
    return {"device": device, "device_name": _device_name(device), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "versions": package_versions(_PACKAGES)}


def _lengths(train_set) -> dict | None:
    examples = train_set.examples if isinstance(getattr(train_set, "examples", None), list) else []
    try:
        return length_histogram([example_length(e) for e in examples])
    except (KeyError, TypeError):  # an example shape the report does not know: no histogram, same run
        return None


def run_record(train_set, device: str) -> dict:
    """train_results.json's `example_lengths` (None for streamed data: its examples are not held) and
    `environment`."""
    return {"example_lengths": _lengths(train_set), "environment": environment(device)}


def write_history(trainer, run_dir: Path) -> None:
    write_json(run_dir / runs.HISTORY, trainer.state.log_history)
