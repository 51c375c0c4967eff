"""Reward models (`task: reward-model`): a sequence classifier with one output, trained by TRL's
RewardTrainer on the same pairs preference tuning reads, to score chosen above rejected
(Bradley-Terry: -log sigmoid(r_chosen - r_rejected)), under ftcli's guards (`FtcliTrainer`).

ftcli tokenizes the pairs (`data.tokenize_pairs`, the SFT templates); a reward model scores whole
sequences, so each reply is laid out after its prompt in the columns TRL's own preparation produces
(chosen_ids, rejected_ids), which RewardTrainer takes as they are.
"""

from __future__ import annotations

from ftcli.training.trainer import FtcliTrainer


def reward_trainer_class():
    from trl import RewardTrainer

    class FtcliRewardTrainer(FtcliTrainer, RewardTrainer):
        reports_perplexity = False

    return FtcliRewardTrainer


def reward_config_class():
    from trl import RewardConfig

    return RewardConfig


def reward_options(recipe) -> dict:
    # The model's dropout as its config says, as for every ftcli run (TRL turns it off by default).
    return {"max_length": recipe.data.max_length, "disable_dropout": False}


def sequences(examples: list[dict]) -> list[dict]:
    """Each pair as two whole sequences, prompt then reply, shortest pairs first (the sampler groups
    training batches by length its own way; eval runs in this order, with little padding)."""
    out = [{"chosen_ids": e["prompt_ids"] + e["chosen_ids"], "rejected_ids": e["prompt_ids"] + e["rejected_ids"]}
           for e in examples]
    return sorted(out, key=sequence_length)


def sequence_length(e: dict) -> int:
    return max(len(e["chosen_ids"]), len(e["rejected_ids"]))
