"""Preference tuning's trainer: TRL's DPOTrainer (its losses, reference handling, fused log-probs)
under ftcli's own guards (`FtcliTrainer`: non-finite loss, seeded length grouping, Ctrl-C and resume
through the shared training path).

How it leans on TRL 1.x (tests/test_preference.py fails loudly when a version changes one):
- `_prepare_dataset` is overridden to return ftcli's examples as they are: they are tokenized already,
  by the templates SFT uses (`data.tokenize_pairs`), in the columns TRL's own preparation produces
  (prompt_ids, chosen_ids, rejected_ids); TRL would otherwise render them a second time, its own way.
- Given a PEFT model and no reference, DPOTrainer copies the adapter as a frozen "ref" adapter. A new
  adapter starts as the identity, so the copy is the base with adapters disabled: it is deleted, and
  TRL then disables the adapters for reference passes (no second copy, and model/ merges one adapter).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil

from ftcli.data.cache_store import cache_dir
from ftcli.errors import UserError
from ftcli.progress import log
from ftcli.recipe import Recipe
from ftcli.training import distributed
from ftcli.training.trainer import FtcliTrainer


def check_installed(recipe: Recipe) -> None:
    """Before any work: a preference recipe needs TRL (the `preference` extra)."""
    if recipe.preference is not None and importlib.util.find_spec("trl") is None:
        raise UserError("a preference: recipe trains with TRL, which is not installed",
                        hint="pip install 'ftcli[preference]' (make install installs it)")


def dpo_trainer_class():
    from trl import DPOTrainer

    class FtcliDPOTrainer(FtcliTrainer, DPOTrainer):
        reports_perplexity = False

        def __init__(self, *args, **kwargs):
            from transformers import set_seed

            super().__init__(*args, **kwargs)
            model = self.accelerator.unwrap_model(self.model)
            if "ref" in getattr(model, "peft_config", {}):
                model.delete_adapter("ref")
                model.set_adapter("default")
            # Scoring the pairs with the reference draws from the RNG (its data loader's seed), and a run
            # that finds those scores cached draws nothing: reseed, so both train alike.
            set_seed(self.args.seed)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return FtcliDPOTrainer


def dpo_options(recipe: Recipe) -> dict:
    """DPOConfig's own fields, from the recipe."""
    p = recipe.preference
    losses = [p.loss_type] if isinstance(p.loss_type, str) else list(p.loss_type)
    return {"beta": p.beta, "loss_type": losses, "loss_weights": p.loss_weights, "label_smoothing": p.label_smoothing,
            "max_length": recipe.data.max_length, "precompute_ref_log_probs": p.precompute_reference,
            # The model's dropout as its config says, as for SFT (TRL turns it off by default).
            "disable_dropout": False}


def dpo_config_class():
    from trl import DPOConfig

    return DPOConfig


def as_dataset(examples: list[dict]):
    """The examples as a datasets.Dataset (what DPOTrainer takes) stored on disk, in ftcli's cache,
    keyed by their content. On disk, not in memory: TRL writes the reference log-probs beside the
    dataset's own files, where every process reads them (an in-memory dataset's would be in one
    process's temporary folder) and where a rerun or resumed run finds them done."""
    from datasets import Dataset, load_from_disk

    digest = hashlib.sha256(json.dumps(examples, separators=(",", ":")).encode()).hexdigest()[:32]
    folder = cache_dir() / "pairs" / digest
    with distributed.main_process_first():
        if not (folder / "dataset_info.json").is_file():
            partial = folder.with_name(f"{digest}.{os.getpid()}.partial")
            Dataset.from_list(examples).save_to_disk(str(partial))
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)  # whole or absent: a crash never leaves a half-written dataset
    return load_from_disk(str(folder))


def by_length(examples: list[dict]) -> list[dict]:
    """The pairs shortest first. TRL scores them with the reference in dataset order, in batches padded
    to their longest pair: in length order that padding is small. Training order is the sampler's
    (seeded, length-grouped), whatever the dataset's order."""
    return sorted(examples, key=_pair_length)


def _pair_length(e: dict) -> int:
    """What a pair costs: its prompt and longer reply, twice over in one batch."""
    return len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"]))


def pair_lengths(examples: list[dict]) -> list[int]:
    return [_pair_length(e) for e in examples]


def reference_model(recipe: Recipe, load):
    """The model DPO measures rewards against, or None where TRL needs none in memory: under LoRA (the
    base with adapters disabled) and when reference log-probs are computed once before training (by
    the starting model itself). `load(name_or_path)` loads a model as training's base is loaded."""
    p = recipe.preference
    if p.reference != "auto":
        log(f"reference model: {p.reference}")
        return load(p.reference)
    if recipe.lora is not None or p.precompute_reference:
        return None
    log("reference model: a frozen copy of the starting model")
    return load(recipe.model.name_or_path)
