"""Causal-LM loss with the LM head run only where a label counts.

The LM head is a (hidden × vocabulary) matmul per position, and its fp32 logits are the largest
tensors of a small model's step (8 × 256 × 49,152 floats = 400 MB for SmolLM2, kept for backward).
In SFT most positions are prompt or padding, ignored by the loss anyway. A forward pre-hook on the
model's output-embedding module hands it only the hidden states whose next token is a target, so the
head computes K rows instead of B × T. Anything a model does to its logits after the head (soft-capping,
scaling) is element-wise, so it commutes with choosing rows: the loss is the same as the full one.

This loss replaces the model's own, so it must also carry the model's other terms: a mixture of experts
(Mixtral, Qwen2-MoE) adds `router_aux_loss_coef × aux_loss` to its loss, and so does this one. Which
model types it is proven equal on is `training.architectures`; the others train on their own loss.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from ftcli.data.tokenize import IGNORE_INDEX

# The router auxiliary loss's coefficient of the model running under `head_on_label_positions`: Trainer
# calls the loss with (outputs, labels, num_items_in_batch) only, and the coefficient is in the config.
_router_aux_loss_coef: ContextVar[float | None] = ContextVar("router_aux_loss_coef", default=None)


def _targets(labels):
    """Which positions predict a target (position p predicts labels[p + 1]), and those targets."""
    keep = labels[:, 1:] != IGNORE_INDEX
    return keep, labels[:, 1:][keep]


@contextmanager
def head_on_label_positions(model, labels):
    """While active, the model's LM head sees only the hidden states of positions whose next token is a
    target; its logits come back as one (K, vocabulary) matrix, in the order of `_targets(labels)`.
    `causal_lm_loss` called inside adds the model's router auxiliary loss with the model's coefficient."""
    coef = _router_aux_loss_coef.set(getattr(model.config, "router_aux_loss_coef", None))
    head = model.get_output_embeddings()
    handle = None
    if head is not None:  # else no separate head module to hook: the loss selects from the full logits
        keep, _ = _targets(labels)

        def select(module, args):
            hidden = args[0]
            if hidden.dim() != 3 or hidden.shape[:2] != labels.shape:
                return None  # not the call on the final hidden states: leave it alone
            return (hidden[:, :-1][keep],) + tuple(args[1:])

        handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
        _router_aux_loss_coef.reset(coef)


def causal_lm_loss(outputs, labels, num_items_in_batch=None):
    """Cross-entropy of the next token, summed and divided by `num_items_in_batch` (the label tokens of
    the whole accumulated batch, as Trainer counts them) or averaged over this batch's label tokens:
    the same reduction transformers' own causal-LM loss uses. Plus the router auxiliary loss of a
    mixture of experts that returns one, weighted as the model itself weights it."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    keep, targets = _targets(labels)
    if logits.dim() == 3:  # the head ran on every position (the hook did not apply): select here
        logits = logits[:, :-1][keep]
    if logits.shape[0] != targets.shape[0]:
        raise RuntimeError(f"LM head returned {logits.shape[0]} rows for {targets.shape[0]} targets")
    if num_items_in_batch is None:
        loss = F.cross_entropy(logits.float(), targets, reduction="mean")
    else:
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        if hasattr(num_items_in_batch, "to"):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        loss = loss / num_items_in_batch
    return loss + _extra_terms(outputs, loss.device)


def _extra_terms(outputs, device):
    """The loss terms a model adds beyond cross-entropy; refuses any this loss does not know, rather
    than train silently without them."""
    if not isinstance(outputs, dict):
        return 0.0
    unknown = [k for k in outputs if k.endswith("loss") and k not in ("loss", "aux_loss")]
    if unknown:
        raise RuntimeError(f"the model returned {', '.join(unknown)}, which ftcli's causal-LM loss does not add")
    aux = outputs.get("aux_loss")
    if aux is None:
        return 0.0
    coef = _router_aux_loss_coef.get()
    if coef is None:
        raise RuntimeError("the model returned a router auxiliary loss but no coefficient for it: "
                           "compute causal_lm_loss inside head_on_label_positions(model, labels)")
    return coef * (aux.to(device) if hasattr(aux, "to") else aux)
