"""The model types on which ftcli's causal-LM levers are proven exact, each by tests/test_architectures.py.

- Packing (`data.packing`): one row per batch, positions restarting per example, no attention mask.
  transformers finds the examples' boundaries from the restarts inside its causal-mask builder
  (`masking_utils.find_packed_sequence_indices`), for the eager and sdpa attention. Under flash_attention_2
  there is no mask: each layer hands the position_ids to the flash path, which cuts the row at the restarts
  into flash-attn's variable-length call (`modeling_flash_attention_utils._is_packed_sequence`), with no
  padding at all. Proven on CPU with a reference varlen kernel (tests/test_precision.py) and on a GPU with
  flash-attn itself (bench/gpu.sh). An architecture that builds its mask some other way, or another
  attention implementation (flex_attention, kernels find boundaries elsewhere, or not at all), would let
  examples attend to each other: a silently wrong loss. So packing is refused on anything not proven here.
- The LM head on label positions only, with ftcli's loss in place of the model's (`lm_loss`): proven equal
  to the model's own loss, router auxiliary loss included. Other models train on their own loss.
"""

from __future__ import annotations

from ftcli.errors import UserError

# Each proven by a test: packed loss and gradients == padded, and ftcli's loss == the model's own.
PROVEN_MODEL_TYPES = ("gemma", "gpt2", "llama", "mistral", "mixtral", "phi3", "qwen2", "qwen2_moe", "qwen3")
PACKING_ATTENTION = ("eager", "sdpa")  # each proven on CPU by tests/test_architectures.py
VARLEN_ATTENTION = ("flash_attention_2",)  # packed rows take flash-attn's variable-length path


def _base(model):
    """The transformers model under a PEFT wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_type(model) -> str:
    return getattr(_base(model).config, "model_type", None) or type(_base(model)).__name__


def attention(model) -> str | None:
    """The attention implementation the model runs: transformers keeps it in the config's
    `_attn_implementation` (what `set_attn_implementation` writes); read here alone, and tested."""
    return getattr(_base(model).config, "_attn_implementation", None)


def _proven(model) -> bool:
    # transformers' own code for the type: remote code (trust_remote_code) may reuse a type's name.
    kind = model_type(model)
    return kind in PROVEN_MODEL_TYPES and type(_base(model)).__module__ == f"transformers.models.{kind}.modeling_{kind}"


def exact_lm_loss(model) -> bool:
    """Whether ftcli's causal-LM loss (the LM head on label positions only) is proven equal to the model's."""
    return _proven(model)


def passes_are_exact(model) -> bool:
    """Whether token-bounded passes give the whole batch's loss: not with a router auxiliary loss, which
    is a product of per-batch routing statistics, not a sum over tokens (each pass would add its own)."""
    return not getattr(_base(model).config, "output_router_logits", False)


def check_packing(model) -> None:
    """Refuse `data.packing` where packed examples are not proven to stay apart."""
    kind, attn = model_type(model), attention(model)
    if _proven(model) and attn in PACKING_ATTENTION + VARLEN_ATTENTION:
        return
    raise UserError(f"data.packing is not proven for model type {kind} with {attn} attention: examples packed "
                    "into one row could attend to each other",
                    hint=f"set data.packing: false (padded batches train on the same loss); packing is proven "
                         f"for {', '.join(PROVEN_MODEL_TYPES)} with {', '.join(PACKING_ATTENTION + VARLEN_ATTENTION)} "
                         "attention")


def loss_levers(model, causal_lm: bool, micro_batch_tokens: int | str | None, log, liger: bool = False) -> dict:
    """FtcliTrainer's causal-LM options for this model: ftcli's loss and token-bounded passes where they
    are proven exact, the model's own loss on the whole batch where not (said once in the log). Under
    Liger's kernels the model's own loss is their fused linear-cross-entropy, which never holds the
    logits at all: it is kept (the labels must reach the model for it)."""
    if not causal_lm:
        return {"causal_lm": False, "micro_batch_tokens": micro_batch_tokens}
    if liger:
        log("train.liger_kernel: training on Liger's fused linear-cross-entropy loss (the model's own), in whole "
            "batches")
        return {"causal_lm": False, "micro_batch_tokens": None}
    if not exact_lm_loss(model):
        log(f"model type {model_type(model)}: training on the model's own loss (the LM head on label positions "
            f"only is proven for {', '.join(PROVEN_MODEL_TYPES)})")
        return {"causal_lm": False, "micro_batch_tokens": None}
    if micro_batch_tokens and not passes_are_exact(model):
        if micro_batch_tokens != "auto":  # a number the recipe asked for: say why it is not used
            log("train.micro_batch_tokens ignored: the router auxiliary loss (output_router_logits) is not a "
                "sum over tokens, so passes would change it; each batch runs whole")
        micro_batch_tokens = None
    return {"causal_lm": True, "micro_batch_tokens": micro_batch_tokens}
