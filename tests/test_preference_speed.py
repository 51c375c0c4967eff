"""What ftcli changes in how TRL's preference trainers compute, for speed, and that each change computes
the same thing: on CPU the fused LM head projects only the scored positions, and the reference pass
runs with adapters disabled rather than through TRL's copy of a new adapter."""

from __future__ import annotations

import pytest
import torch

from ftcli.training import preference
from test_end_to_end import run_cli, write_recipe
from test_preference import dpo_recipe, write_pairs

trl_utils = pytest.importorskip("trl.trainer.utils")


def _fused_log_probs(model, batch, labels):
    model.zero_grad()
    out = model(**batch, labels=labels, fused_lm_head=True)
    out.log_probs.sum().backward()
    return out.log_probs.detach(), model.get_output_embeddings().weight.grad.clone()


def test_on_cpu_the_fused_head_projects_only_scored_positions_with_the_same_log_probs(tiny_llama, monkeypatch):
    from transformers import AutoModelForCausalLM

    # TRL's own choice, even where an earlier test's trainer has put ftcli's in its place; restored after
    monkeypatch.setattr(trl_utils, "_use_triton", getattr(trl_utils._use_triton, "trls", trl_utils._use_triton))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model)
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding in one row
    labels = ids.masked_fill(torch.arange(24) < 16, -100)  # a prompt of 16 tokens, a reply of 8
    batch = {"input_ids": ids, "attention_mask": mask}

    projected = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        projected.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    every_position = _fused_log_probs(model, batch, labels)
    preference._fused_head_on_scored_positions_only()
    scored_only = _fused_log_probs(model, batch, labels)

    scored = int((labels[:, 1:] != -100).sum())
    assert projected == [2 * 23, scored]  # TRL's CPU path: every position; ftcli's: the 2 x 8 scored
    torch.testing.assert_close(scored_only[0], every_position[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scored_only[1], every_position[1], rtol=1e-5, atol=1e-6)  # the head's gradient


def test_the_reference_pass_runs_with_adapters_disabled_not_trls_copy(workdir, tiny_llama, monkeypatch):
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    monkeypatch.setenv("FTCLI_CACHE_DIR", str(workdir / "cache"))  # no reference scores cached by other tests

    starting_model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    adapters, gaps = [], []
    original = DPOTrainer.compute_ref_log_probs

    def checked(self, model, inputs):
        adapters.append(sorted(self.accelerator.unwrap_model(self.model).peft_config))
        chosen, rejected = original(self, model, inputs)
        gaps.append((torch.cat([chosen, rejected]) - _summed_log_probs(starting_model, inputs)).abs().max().item())
        return chosen, rejected

    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", checked)
    raw = dpo_recipe(tiny_llama, write_pairs(workdir), max_steps=4)
    result = run_cli("finetune", str(write_recipe(workdir / "dpo.yaml", raw)))
    assert result.exit_code == 0, result.output
    assert adapters and all(names == ["default"] for names in adapters), adapters  # TRL's "ref" copy is gone
    assert max(gaps) < 1e-4, gaps  # and the reference is still the starting model


def _summed_log_probs(model, batch) -> torch.Tensor:
    """Each sequence's summed log-probability of its completion tokens, the plain way: full logits."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    per_token = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (per_token * batch["completion_mask"][:, 1:]).sum(dim=1)
