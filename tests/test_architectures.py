"""Per architecture, ftcli's causal-LM levers are proven exact: packed batches give the padded loss, logits
and gradients (eager and sdpa), and ftcli's loss (the LM head on label positions, in place of the model's)
equals the model's own, router auxiliary loss included. Anything unproven is refused (packing) or trains
on its own loss. Tiny random models, fp32, built here."""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.data.collators import PackingCollator, PadCollator
from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.errors import UserError
from ftcli.training import architectures
from ftcli.training.architectures import PACKING_ATTENTION, PROVEN_MODEL_TYPES, check_packing, loss_levers

V, PAD = 97, 0
COMMON = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, pad_token_id=PAD)
MOE = dict(num_experts_per_tok=2, output_router_logits=True)


def tiny_config(kind: str, attn: str = "sdpa"):
    """A 2-layer model of each proven type, without dropout; sliding windows (4) shorter than the examples."""
    import transformers as T

    configs = {
        "llama": lambda: T.LlamaConfig(**COMMON),
        "mistral": lambda: T.MistralConfig(**COMMON, sliding_window=4),
        "qwen2": lambda: T.Qwen2Config(**COMMON, use_sliding_window=True, sliding_window=4, max_window_layers=1),
        "qwen3": lambda: T.Qwen3Config(**COMMON, head_dim=8),
        "gemma": lambda: T.GemmaConfig(**COMMON, head_dim=8),
        "phi3": lambda: T.Phi3Config(**COMMON, sliding_window=4),
        "gpt2": lambda: T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=128, pad_token_id=PAD,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
        "mixtral": lambda: T.MixtralConfig(**COMMON, **MOE, num_local_experts=4),
        "qwen2_moe": lambda: T.Qwen2MoeConfig(**COMMON, **MOE, num_experts=4, moe_intermediate_size=16,
                                              shared_expert_intermediate_size=32),
        # Not proven: OPT takes its positions from the attention mask, so packed examples do not restart.
        "opt": lambda: T.OPTConfig(vocab_size=V, hidden_size=32, ffn_dim=64, num_hidden_layers=2, pad_token_id=PAD,
                                   num_attention_heads=4, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0),
    }
    config = configs[kind]()  # a KeyError here: a type added to PROVEN_MODEL_TYPES without its proof
    config._attn_implementation = attn
    return config


def tiny_model(kind: str, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(kind, attn)).eval()


def examples(lengths=(9, 17, 5, 12), prompt=3) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    rows = []
    for n in lengths:
        ids = torch.randint(1, V, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return rows


def label_count(batch) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def unpacked(logits, rows) -> list[torch.Tensor]:
    """A packed row's logits cut back into its examples."""
    starts = [0]
    for r in rows:
        starts.append(starts[-1] + len(r["input_ids"]))
    return [logits[0, a:b] for a, b in zip(starts, starts[1:])]


def grads(model, loss) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


# ------------------------------------------------------------------ packing

@pytest.mark.parametrize("attn", PACKING_ATTENTION)
@pytest.mark.parametrize("kind", PROVEN_MODEL_TYPES)
def test_packed_batches_give_the_padded_loss_logits_and_gradients(kind, attn):
    model = tiny_model(kind, attn)
    assert architectures.attention(model) == attn  # transformers still keeps it where we read it
    rows = examples()
    padded, packed = PadCollator(PAD)(rows), PackingCollator()(rows)
    n = label_count(padded)
    for training in (False, True):  # eval builds a cache unless told not to; train never does
        model.train(training)
        full, both = model(**padded, num_items_in_batch=n), model(**packed, num_items_in_batch=n)
        assert both.loss.item() == pytest.approx(full.loss.item(), rel=1e-5)
        for i, piece in enumerate(unpacked(both.logits, rows)):
            torch.testing.assert_close(piece, full.logits[i, :len(piece)], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads(model, full.loss), grads(model, both.loss)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    check_packing(model)  # and ftcli lets it pack


def test_the_packing_check_would_see_examples_attending_to_each_other():
    # The same packed row with its boundaries lost (a 2-D mask turns the position_ids path off).
    model = tiny_model("llama")
    rows = examples()
    padded, packed = PadCollator(PAD)(rows), PackingCollator()(rows)
    leaky = model(**{**packed, "attention_mask": torch.ones_like(packed["input_ids"])}).logits
    worst = max((piece - model(**padded).logits[i, :len(piece)]).abs().max().item()
                for i, piece in enumerate(unpacked(leaky, rows)))
    assert worst > 1e-2  # far beyond the tolerance above


def test_packing_is_refused_where_not_proven():
    with pytest.raises(UserError) as caught:
        check_packing(tiny_model("opt"))
    assert "model type opt with sdpa attention" in str(caught.value) and "data.packing: false" in caught.value.hint
    llama = tiny_model("llama")
    llama.config._attn_implementation = "flex_attention"  # finds boundaries its own way: not proven here
    with pytest.raises(UserError, match="model type llama with flex_attention attention"):
        check_packing(llama)


def test_remote_code_reusing_a_proven_type_name_is_not_proven():
    from transformers import LlamaForCausalLM

    class RemoteLlama(LlamaForCausalLM):  # what trust_remote_code loads: its own modeling code
        pass

    torch.manual_seed(0)
    model = RemoteLlama(tiny_config("llama"))
    assert architectures.model_type(model) == "llama" and not architectures.exact_lm_loss(model)
    with pytest.raises(UserError, match="model type llama"):
        check_packing(model)


# ------------------------------------------------------------------ ftcli's loss == the model's own

def trainer_for(model, tmp_path, **levers):
    from transformers import TrainingArguments

    from ftcli.training.trainer import FtcliTrainer

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    return FtcliTrainer(model=model, args=args, **levers)


@pytest.mark.parametrize("num_items", [None, 50])
@pytest.mark.parametrize("kind", PROVEN_MODEL_TYPES)
def test_ftcli_loss_equals_the_model_loss(kind, num_items, tmp_path):
    model = tiny_model(kind).train()
    levers = loss_levers(model, True, None, log=print)
    assert levers["causal_lm"]  # proven: ftcli's loss and the LM head on label positions
    trainer = trainer_for(model, tmp_path, **levers)
    batch = PadCollator(PAD)(examples())
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    own = model(**batch, **kwargs)
    ours, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True, num_items_in_batch=num_items)
    assert outputs.logits.shape == (label_count(batch), V)  # the head ran on the label positions only
    assert ours.item() == pytest.approx(own.loss.item(), rel=1e-6)
    if kind in ("mixtral", "qwen2_moe"):  # the router term is there, and large enough to matter here
        assert own.aux_loss * model.config.router_aux_loss_coef > 1e-4 * own.loss
    for a, b in zip(grads(model, own.loss), grads(model, trainer.compute_loss(model, dict(batch), **kwargs))):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_a_lora_wrapped_mixture_of_experts_keeps_its_router_loss(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("mixtral"), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert architectures.model_type(model) == "mixtral"
    check_packing(model)
    trainer = trainer_for(model, tmp_path, **loss_levers(model, True, None, log=print))
    batch = PadCollator(PAD)(examples())
    assert trainer.compute_loss(model, dict(batch), num_items_in_batch=50).item() == pytest.approx(
        model(**batch, num_items_in_batch=50).loss.item(), rel=1e-6)


def test_the_loss_refuses_terms_it_cannot_add():
    from ftcli.training.lm_loss import causal_lm_loss

    batch = PadCollator(PAD)(examples())
    logits = torch.zeros(*batch["labels"].shape, V)
    with pytest.raises(RuntimeError, match="z_loss"):  # a loss term this loss does not know
        causal_lm_loss({"logits": logits, "z_loss": torch.tensor(1.0)}, batch["labels"])
    with pytest.raises(RuntimeError, match="no coefficient"):  # a router loss with no model to weigh it
        causal_lm_loss({"logits": logits, "aux_loss": torch.tensor(1.0)}, batch["labels"])


def test_an_unproven_model_trains_on_its_own_loss(tmp_path):
    model = tiny_model("opt").train()
    said = []
    levers = loss_levers(model, True, 4096, log=said.append)
    assert levers == {"causal_lm": False, "micro_batch_tokens": None}
    assert "model type opt: training on the model's own loss" in said[0]
    trainer = trainer_for(model, tmp_path, **levers)
    batch = PadCollator(PAD)(examples())
    assert trainer.compute_loss_func is None
    assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(model(**batch).loss.item(), rel=1e-6)


def test_passes_are_off_with_a_router_auxiliary_loss():
    said = []
    assert loss_levers(tiny_model("mixtral"), True, 64, log=said.append) == {"causal_lm": True,
                                                                            "micro_batch_tokens": None}
    assert "micro_batch_tokens ignored" in said[0]
    quiet = tiny_model("mixtral")
    quiet.config.output_router_logits = False
    assert loss_levers(quiet, True, 64, log=said.append)["micro_batch_tokens"] == 64


# ------------------------------------------------------------------ through ftcli finetune

def test_finetune_refuses_packing_an_unproven_model_before_training(workdir, tiny_llama):
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    torch.manual_seed(0)
    OPTForCausalLM(OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                             num_attention_heads=4, word_embed_proj_dim=32, pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                   ).save_pretrained(workdir / "opt")
    tokenizer.save_pretrained(workdir / "opt")
    rows = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 16))
    outputs = {}
    for packing in (True, False):
        recipe = {"task": "causal-lm", "model": {"name_or_path": str(workdir / "opt")},
                  "data": {"train": str(rows), "eval_fraction": 0, "max_length": 64, "packing": packing},
                  "train": {"output_dir": f"runs/{packing}", "max_steps": 1, "batch_size": 4}}
        (workdir / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
        outputs[packing] = CliRunner().invoke(app, ["finetune", str(workdir / "r.yaml")])
    assert outputs[True].exit_code == 2, outputs[True].output
    assert "data.packing is not proven for model type opt with sdpa attention" in outputs[True].output
    assert "data.packing: false" in outputs[True].output
    assert not (workdir / "runs/True").exists()  # refused before anything was written
    assert outputs[False].exit_code == 0, outputs[False].output
    assert "model type opt: training on the model's own loss" in outputs[False].output
