"""The recipe's `preference:` section: it turns a causal-LM recipe into preference tuning on pairs
of a chosen and a rejected reply (KTO: also on single replies labelled good or bad), with TRL's
trainers (`ftcli.training.preference`).

Names follow TRL's configs where they have them (beta, loss_type, label_smoothing, simpo_gamma,
desirable_weight, undesirable_weight). `method` names the family:
- dpo: DPOTrainer, the sigmoid loss or any of DPOConfig's loss_type values; ipo: its loss_type ipo;
- kto: KTOTrainer (loss_type kto or apo_zero_unpaired), on unpaired rows or on pairs split in two;
- orpo: ORPOTrainer, and simpo: CPOTrainer's loss_type simpo without its BC term (cpo_alpha 0). Both are
  reference-free, and both live in trl.experimental in TRL 1.x.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ftcli.errors import suggest
from ftcli.recipe.section import Section

# TRL 1.x DPOConfig.loss_type values (trl/trainer/dpo_config.py).
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")  # KTOConfig.loss_type
METHOD_LOSS = {"dpo": "sigmoid", "ipo": "ipo", "kto": "kto"}
REFERENCE_FREE = ("orpo", "simpo")
# The method's own beta where TRL's 0.1 does not fit: SimPO's reward is a mean log-probability per
# token, far smaller than DPO's summed log-ratio (Meng et al. use 2.0-2.5).
DEFAULT_BETA = {"simpo": 2.0}
# What `ftcli eval` reports for a preference run (the tuned model against its reference).
PREFERENCE_METRICS = ("preference_accuracy", "reward_margin", "logprob_preference", "logprob_preference_sum")
# Keys that mean something to some methods only: the methods they apply to.
_ONLY_FOR = {"loss_weights": ("dpo",), "label_smoothing": ("dpo", "simpo"), "simpo_gamma": ("simpo",),
             "desirable_weight": ("kto",), "undesirable_weight": ("kto",),
             "precompute_reference": ("dpo", "ipo", "kto")}


class PreferenceSection(Section):
    method: Literal["dpo", "ipo", "kto", "orpo", "simpo"] = Field(
        "dpo", description="dpo (Rafailov et al.; any DPO loss_type), ipo (Azar et al.: DPO's loss_type ipo), "
                           "kto (Ethayarajh et al.: single replies marked good or bad, or pairs split in two), "
                           "orpo (Hong et al.: SFT on chosen plus an odds-ratio penalty, no reference) or simpo "
                           "(Meng et al.: length-normalised reward with a target margin, no reference).")
    beta: float | None = Field(None, gt=0, description="The reward's scale: how far the tuned model may move "
                                                       "from the reference (IPO: its regulariser tau; ORPO: the "
                                                       "odds-ratio term's weight, lambda). Default 0.1; simpo 2.0.")
    loss_type: str | list[str] | None = Field(
        None, description="dpo: one of TRL's DPO losses (default sigmoid; hinge, robust, bco_pair, apo_zero, ...), "
                          "or a list of them added up (e.g. [sigmoid, sft]: DPO plus the chosen replies' "
                          "likelihood, as in RPO). ipo: ipo. kto: kto or apo_zero_unpaired.")
    loss_weights: list[float] | None = Field(None, description="dpo, with a list of loss_type: each one's weight "
                                                               "(default 1 each).")
    label_smoothing: float | None = Field(None, ge=0, lt=0.5, description="dpo, simpo: the share of pairs assumed "
                                                                          "mislabelled (conservative DPO). Default 0.")
    simpo_gamma: float | None = Field(None, ge=0, description="simpo: the target reward margin (default 0.5).")
    desirable_weight: float | None = Field(None, gt=0, description="kto: the weight of good replies' losses "
                                                                   "(default 1; raise it when they are fewer).")
    undesirable_weight: float | None = Field(None, gt=0, description="kto: the weight of bad replies' losses "
                                                                     "(default 1).")
    reference: str | None = Field(None, description="The model rewards are measured against: auto (the default "
                                                    "for dpo, ipo, kto: the starting model; under lora: the base "
                                                    "with adapters off, no second copy; else a frozen copy), a "
                                                    "model path, or none (orpo and simpo, which use none).")
    precompute_reference: bool | None = Field(None, description="dpo, ipo, kto: score every example with the "
                                                                "reference once before training, instead of a "
                                                                "reference pass per step (default true).")

    @model_validator(mode="after")
    def _fits_method(self) -> "PreferenceSection":
        m = self.method
        for key, methods in _ONLY_FOR.items():
            if getattr(self, key) is not None and m not in methods:
                raise ValueError(f"{key} applies to method {', '.join(methods)} only, not {m}: remove it")
        self._check_loss()
        if m in REFERENCE_FREE and self.reference not in (None, "none"):
            raise ValueError(f"method {m} is reference-free: it has no reference model to set "
                             f"(remove reference, or use method dpo to tune against {self.reference!r})")
        if m not in REFERENCE_FREE and self.reference == "none":
            raise ValueError(f"method {m} measures rewards against a reference model: set reference: auto (the "
                             "starting model) or a model path; orpo and simpo need none")
        # Defaults written out, so the saved recipe says what ran.
        defaults = {"reference": "none" if m in REFERENCE_FREE else "auto", "beta": DEFAULT_BETA.get(m, 0.1)}
        if m in ("dpo", "simpo"):
            defaults["label_smoothing"] = 0.0
        if m == "simpo":
            defaults["simpo_gamma"] = 0.5
        if m == "kto":
            defaults.update(desirable_weight=1.0, undesirable_weight=1.0)
        if m in _ONLY_FOR["precompute_reference"]:
            defaults["precompute_reference"] = True
        for key, value in defaults.items():
            if getattr(self, key) is None:  # only then: each assignment validates the section again
                setattr(self, key, value)
        return self

    def _check_loss(self) -> None:
        m = self.method
        if m in REFERENCE_FREE:
            if self.loss_type is not None:
                raise ValueError(f"method {m} has one loss: remove loss_type (it names DPO's and KTO's losses)")
            return
        if self.loss_type is None:
            self.loss_type = METHOD_LOSS[m]
        losses = [self.loss_type] if isinstance(self.loss_type, str) else self.loss_type
        if not losses:
            raise ValueError("loss_type is an empty list: name at least one loss")
        allowed = KTO_LOSS_TYPES if m == "kto" else DPO_LOSS_TYPES
        if m == "kto" and len(losses) > 1:
            raise ValueError("method kto takes one loss_type (kto or apo_zero_unpaired), not a list")
        for loss in losses:
            if loss not in allowed:
                raise ValueError(f"loss_type '{loss}' is not a {m.upper()} loss{suggest(loss, allowed)} "
                                 f"(choose from {', '.join(allowed)})")
        if m == "ipo" and losses != ["ipo"]:
            raise ValueError(f"method ipo is DPO's loss_type ipo; loss_type {self.loss_type!r} is another method: "
                             "set method: dpo with that loss_type, or leave loss_type out")
        if self.loss_weights is not None and len(self.loss_weights) != len(losses):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} weights for {len(losses)} loss_type values")

    @property
    def has_reference(self) -> bool:
        return self.reference != "none"


def preference_problems(recipe) -> list[str]:
    """What `preference:` cannot be combined with (a Recipe, duck-typed: the schema imports this)."""
    if recipe.preference is None:
        return []
    problems = []
    if recipe.task != "causal-lm":
        problems.append(f"preference: tunes a causal-lm on pairs of replies; task {recipe.task} has none "
                        "(a reward model is its own task: task: reward-model, without a preference: section)")
    if recipe.data.packing:
        problems.append("data.packing does not apply to preference pairs (each pair is scored as one padded "
                        "batch of chosen and rejected): remove data.packing")
    if recipe.data.streaming:
        problems.append("data.streaming does not work with preference tuning, which scores every pair with "
                        "the reference first: remove data.streaming")
    if recipe.model.from_config is not None:
        problems.append("preference: tunes a trained model against itself as reference; a model built "
                        "from_config has learned nothing to prefer with: train it first, then start from its run")
    p = recipe.preference
    if p.method == "kto" and p.loss_type == "kto" and recipe.train.batch_size < 2:
        problems.append("method kto estimates its KL term from the other replies in a batch: train.batch_size "
                        "must be at least 2")
    return problems


def reward_model_problems(recipe) -> list[str]:
    """What `task: reward-model` (a scalar head trained on pairs, TRL's RewardTrainer) cannot be combined with."""
    if recipe.task != "reward-model":
        return []
    problems = []
    if recipe.data.streaming:
        problems.append("data.streaming does not work with task reward-model: remove data.streaming")
    if recipe.model.from_config is not None:
        problems.append("task reward-model starts from a pretrained model (its head scores what the body "
                        "understands): model.from_config has learned nothing yet")
    return problems
