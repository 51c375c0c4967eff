"""Preference tuning's trainers: TRL's DPOTrainer (DPO, IPO), KTOTrainer, and from trl.experimental
ORPOTrainer and CPOTrainer (SimPO) — their losses, reference handling, fused log-probs — under ftcli's own guards (`FtcliTrainer`: non-finite loss, seeded length grouping, Ctrl-C and resume
through the shared training path).

How it leans on TRL 1.x (tests/test_preference.py fails loudly when a version changes one):
- `_prepare_dataset` (DPO, KTO) is overridden to return ftcli's examples as they are: they are tokenized
  already, by the templates SFT uses (`data.tokenize_pairs`), in the columns TRL's own preparation
  produces (prompt_ids, chosen_ids, rejected_ids; KTO: prompt_ids, completion_ids, label and
  KL_completion_ids); TRL would otherwise render them a second time, its own way. ORPO and CPO
  tokenize row by row (`tokenize_row`), overridden to lay ftcli's ids out in their columns.
- Given a PEFT model and no reference, DPOTrainer (and KTOTrainer) copies the adapter as a frozen "ref" adapter. A new
  adapter starts as the identity, so the copy is the base with adapters disabled: it is deleted, and
  TRL then disables the adapters for reference passes (no second copy, and model/ merges one adapter).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import random
import shutil

from ftcli.data.cache_store import cache_dir
from ftcli.data.tokenize_pairs import preference_example_length
from ftcli.errors import UserError
from ftcli.progress import log
from ftcli.recipe import Recipe
from ftcli.training import distributed
from ftcli.training.sampling import SeededLengthGroupedSampler
from ftcli.training.trainer import FtcliTrainer


def check_installed(recipe: Recipe) -> None:
    """Before any work: a preference recipe or a reward model needs TRL (the `preference` extra)."""
    if recipe.tunes_on_pairs and importlib.util.find_spec("trl") is None:
        what = "a preference: recipe" if recipe.preference else "task reward-model"
        raise UserError(f"{what} trains with TRL, which is not installed",
                        hint="pip install 'ftcli[preference]' (make install installs it)")


def _drop_reference_adapter(trainer) -> None:
    """TRL's copy of a new adapter as the frozen "ref" adapter: the identity, so the base with adapters
    disabled is the same reference, without the copy's LoRA branches in every reference forward."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")


def _fused_head_on_scored_positions_only() -> None:
    """TRL's fused LM head (DPO, KTO) projects only the positions that have a label on Triton devices,
    and every position elsewhere: on Neuron a varying count of positions recompiles its kernels. Eager
    CPU compiles nothing, and a pair's prompt (no label) is most of its tokens, so on CPU too only the
    scored positions go through the head. The same log-probs, a fraction of the head's work (with its
    backward, a third of a CPU DPO step at the bench's sizes)."""
    from trl.trainer import utils

    scored_only = getattr(utils, "_use_triton", None)
    if scored_only is None or getattr(scored_only, "ftcli", False):
        return  # tests/test_preference.py notices a TRL that renames it

    def compact(device) -> bool:
        return device.type == "cpu" or scored_only(device)

    compact.ftcli, compact.trls = True, scored_only
    utils._use_triton = compact


def _after_init(trainer) -> None:
    """What every ftcli preference trainer does once TRL's __init__ has run."""
    from transformers import set_seed

    _drop_reference_adapter(trainer)
    # Scoring the examples with the reference draws from the RNG (its data loader's seed), and a run
    # that finds those scores cached draws nothing: reseed, so both train alike.
    set_seed(trainer.args.seed)


def _tokenized_pair_columns(feature: dict) -> dict:
    """An ftcli pair in the columns TRL's older pair trainers (ORPO, CPO) build with their own
    tokenizer: each reply after the prompt, labels -100 on the prompt."""
    prompt = feature["prompt_ids"]
    out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        reply = feature[f"{side}_ids"]
        out[f"{side}_input_ids"] = prompt + reply
        out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(reply))
        out[f"{side}_labels"] = [-100] * len(prompt) + reply
    return out


# Each method's TRL trainer and config: (module, trainer, config). TRL 1.x keeps ORPO and CPO (whose
# loss_type simpo is SimPO) in trl.experimental.
_TRL_CLASSES = {"dpo": ("trl", "DPOTrainer", "DPOConfig"), "ipo": ("trl", "DPOTrainer", "DPOConfig"),
                "kto": ("trl", "KTOTrainer", "KTOConfig"),
                "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
                "simpo": ("trl.experimental.cpo", "CPOTrainer", "CPOConfig")}


def _trl_class(method: str, which: int):
    module, *names = _TRL_CLASSES[method]
    return getattr(importlib.import_module(module), names[which])


def trainer_class(method: str):
    """FtcliTrainer (guards, seeded length grouping, resume) on TRL's trainer for `method`."""
    import torch

    base = _trl_class(method, 0)
    _fused_head_on_scored_positions_only()

    class FtcliPreferenceTrainer(FtcliTrainer, base):
        reports_perplexity = False

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            _after_init(self)

        def compute_ref_log_probs(self, *args, **kwargs):
            # TRL scores the reference inside its __init__, before _after_init could drop the copy
            _drop_reference_adapter(self)
            return super().compute_ref_log_probs(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # DPO, KTO: tokenized by ftcli already

        def tokenize_row(self, feature, model=None):
            return _tokenized_pair_columns(feature)  # ORPO, CPO: tokenized by ftcli already

        def _track_num_input_tokens(self, inputs):
            if "input_ids" not in inputs and "chosen_attention_mask" in inputs:  # ORPO, CPO: both replies' tokens
                masks = (inputs["chosen_attention_mask"].flatten(), inputs["rejected_attention_mask"].flatten())
                inputs = {"input_ids": inputs["chosen_input_ids"], "attention_mask": torch.cat(masks)}
            super()._track_num_input_tokens(inputs)

    FtcliPreferenceTrainer.__name__ = f"Ftcli{base.__name__}"
    return FtcliPreferenceTrainer


def config_class(method: str):
    return _trl_class(method, 1)


def trainer_options(recipe: Recipe) -> dict:
    """The TRL config's own fields, from the recipe."""
    p = recipe.preference
    # The model's dropout as its config says, as for SFT (TRL turns it off by default).
    common = {"beta": p.beta, "max_length": recipe.data.max_length, "disable_dropout": False}
    if p.method in ("dpo", "ipo"):
        losses = [p.loss_type] if isinstance(p.loss_type, str) else list(p.loss_type)
        return {**common, "loss_type": losses, "loss_weights": p.loss_weights,
                "label_smoothing": p.label_smoothing or 0.0, "precompute_ref_log_probs": p.precompute_reference}
    if p.method == "kto":
        return {**common, "loss_type": p.loss_type, "desirable_weight": p.desirable_weight,
                "undesirable_weight": p.undesirable_weight, "precompute_ref_log_probs": p.precompute_reference}
    if p.method == "simpo":  # CPO's simpo loss without its behaviour-cloning term is SimPO
        return {**common, "loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": p.simpo_gamma,
                "label_smoothing": p.label_smoothing}
    return common


def takes_reference(method: str) -> bool:
    return method in ("dpo", "ipo", "kto")


def examples_for(recipe: Recipe, examples: list[dict], batch_size: int) -> list[dict]:
    """The examples in the form `method`'s trainer takes. KTO: pairs become two unpaired rows (chosen
    desirable, rejected not), as TRL's unpair_preference_dataset makes them. With loss_type kto each row
    also gets the mismatched completion its KL term is estimated from, the previous row's in its batch
    of `batch_size`: a pairing that holds only if batches are drawn in dataset order, so the rows are
    put in training order here (seeded; length-grouped as train.group_by_length asks) and sampled
    sequentially (`sampling_options`). Otherwise shortest first: TRL scores the reference in dataset
    order, in batches padded to their longest, and the sampler draws training batches its own way."""
    p = recipe.preference
    if p.method != "kto":
        return by_length(examples)
    rows = [r for e in examples for r in _unpaired(e)]
    if p.loss_type != "kto":
        return by_length(rows)
    t = recipe.train
    seed = t.data_seed if getattr(t, "data_seed", None) is not None else t.seed
    if t.group_by_length:
        global_batch = batch_size * t.gradient_accumulation_steps * distributed.world_size()
        order = list(SeededLengthGroupedSampler(pair_lengths(rows), global_batch, seed))
    else:
        order = random.Random(seed).sample(range(len(rows)), len(rows))
    return _with_kl_completions([rows[i] for i in order], batch_size)


def sampling_options(recipe: Recipe) -> dict:
    """KTO's KL pairing needs batches drawn in dataset order (`examples_for`)."""
    p = recipe.preference
    return {"train_sampling_strategy": "sequential"} if p.method == "kto" and p.loss_type == "kto" else {}


def _unpaired(example: dict) -> list[dict]:
    if "completion_ids" in example:
        return [example]
    return [{"prompt_ids": example["prompt_ids"], "completion_ids": example["chosen_ids"], "label": True},
            {"prompt_ids": example["prompt_ids"], "completion_ids": example["rejected_ids"], "label": False}]


def _with_kl_completions(rows: list[dict], batch_size: int) -> list[dict]:
    """TRL's KL pairing: within each run of `batch_size` rows, each row's KL completion is the
    previous row's completion (the first row takes the last's)."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        completions = [r["completion_ids"] for r in chunk]
        out += [{**r, "KL_completion_ids": kl} for r, kl in zip(chunk, completions[-1:] + completions[:-1])]
    return out


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
    return sorted(examples, key=preference_example_length)


def pair_lengths(examples: list[dict]) -> list[int]:
    return [preference_example_length(e) for e in examples]


def reference_model(recipe: Recipe, load):
    """The model DPO measures rewards against, or None where TRL needs none in memory: under LoRA (the
    base with adapters disabled) and when reference log-probs are computed once before training (by
    the starting model itself). `load(name_or_path)` loads a model as training's base is loaded."""
    p = recipe.preference
    if not p.has_reference:
        return None
    if p.reference != "auto":
        log(f"reference model: {p.reference}")
        return load(p.reference)
    if recipe.lora is not None or p.precompute_reference:
        return None
    log("reference model: a frozen copy of the starting model")
    return load(recipe.model.name_or_path)
