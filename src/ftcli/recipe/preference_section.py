"""The recipe's `preference:` section: it turns a causal-LM recipe into preference tuning on pairs
of a chosen and a rejected reply, with TRL's DPOTrainer (`ftcli.training.preference`).

Names follow TRL's DPOConfig where it has them (beta, loss_type, label_smoothing). `method` names the
family: dpo (the sigmoid loss, or any of DPOConfig's loss_type values) and ipo (loss_type ipo).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ftcli.errors import suggest
from ftcli.recipe.section import Section

# TRL 1.x DPOConfig.loss_type values (trl/trainer/dpo_config.py).
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
METHOD_LOSS = {"dpo": "sigmoid", "ipo": "ipo"}
# What `ftcli eval` reports for a preference run (the tuned model against its reference).
PREFERENCE_METRICS = ("preference_accuracy", "reward_margin", "logprob_preference", "logprob_preference_sum")


class PreferenceSection(Section):
    method: Literal["dpo", "ipo"] = Field("dpo", description="dpo (Rafailov et al.; any DPO loss_type) or ipo "
                                                             "(Azar et al.: DPO's loss_type ipo).")
    beta: float = Field(0.1, gt=0, description="How far the tuned model may move from the reference: the "
                                                "implicit reward's scale (IPO: its regulariser, tau).")
    loss_type: str | list[str] | None = Field(
        None, description="dpo: one of TRL's DPO losses (default sigmoid; hinge, robust, bco_pair, apo_zero, ...), "
                          "or a list of them added up (e.g. [sigmoid, sft]: DPO plus the chosen replies' "
                          "likelihood, as in RPO). ipo: ipo.")
    loss_weights: list[float] | None = Field(None, description="With a list of loss_type: each one's weight "
                                                               "(default 1 each).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="The share of pairs assumed mislabelled "
                                                                  "(conservative / robust DPO).")
    reference: str = Field("auto", description="The model rewards are measured against: auto (the starting "
                                               "model: under lora: the base with adapters off, no second copy; "
                                               "else a frozen copy), or a model path.")
    precompute_reference: bool = Field(True, description="Score every pair with the reference once before "
                                                         "training, instead of a reference pass per step.")

    @model_validator(mode="after")
    def _loss_fits_method(self) -> "PreferenceSection":
        if self.loss_type is None:
            self.loss_type = METHOD_LOSS[self.method]  # written out, so the saved recipe says what ran
        losses = [self.loss_type] if isinstance(self.loss_type, str) else self.loss_type
        if not losses:
            raise ValueError("loss_type is an empty list: name at least one DPO loss")
        for loss in losses:
            if loss not in DPO_LOSS_TYPES:
                raise ValueError(f"loss_type '{loss}' is not a DPO loss{suggest(loss, DPO_LOSS_TYPES)} "
                                 f"(choose from {', '.join(DPO_LOSS_TYPES)})")
        if self.method == "ipo" and losses != ["ipo"]:
            raise ValueError(f"method ipo is DPO's loss_type ipo; loss_type {self.loss_type!r} is another method: "
                             "set method: dpo with that loss_type, or leave loss_type out")
        if self.loss_weights is not None and len(self.loss_weights) != len(losses):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} weights for {len(losses)} loss_type values")
        if self.reference == "none":
            raise ValueError("DPO and IPO measure rewards against a reference model: set reference: auto (the "
                             "starting model) or a model path")
        return self


def preference_problems(recipe) -> list[str]:
    """What `preference:` cannot be combined with (a Recipe, duck-typed: the schema imports this)."""
    if recipe.preference is None:
        return []
    problems = []
    if recipe.task != "causal-lm":
        problems.append(f"preference: tunes a causal-lm on pairs of replies; task {recipe.task} has none "
                        "(a reward model is its own task)")
    if recipe.data.packing:
        problems.append("data.packing does not apply to preference pairs (each pair is scored as one padded "
                        "batch of chosen and rejected): remove data.packing")
    if recipe.data.streaming:
        problems.append("data.streaming does not work with preference tuning, which scores every pair with "
                        "the reference first: remove data.streaming")
    if recipe.model.from_config is not None:
        problems.append("preference: tunes a trained model against itself as reference; a model built "
                        "from_config has learned nothing to prefer with: train it first, then start from its run")
    return problems
