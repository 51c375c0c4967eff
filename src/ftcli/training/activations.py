"""Activation memory of one training pass, measured on the meta device: no weights, no data, no time.

A model built on the meta device runs its forward pass with shapes only. Every tensor autograd keeps for
backward goes through `torch.autograd.graph.saved_tensors_hooks`; their storages (the parameters' own
excepted, already counted as weights) are the activations a real pass keeps. Two kernels save other
tensors on meta than on a CPU or GPU, and are stood in for while measuring (`_RealKernels`):
- dropout: CUDA's fused kernel and ftcli's FastDropout (LoRA's, on CPU) keep a bool mask; torch's CPU
  dropout keeps the float noise it multiplied by;
- sdpa: meta runs the math path (the full attention matrix); the fused kernels torch picks on CPU and
  CUDA (flash, memory-efficient) keep q, k, v, the output (laid out tokens-first) and a log-sum-exp
  per query (and the mask or bias, when given). With attention dropout a CPU runs the math path too (BERT's 0.1): left to meta's own.
Measured against real passes: SmolLM2-135M + LoRA, 4 x 128 tokens, 885 MB kept on CPU, 885 MB here.

Gradient checkpointing keeps only each layer's input and recomputes one layer at a time in backward:
outside the layers + every layer's input + the largest layer's own activations. The layers are the
units transformers checkpoints (`GradientCheckpointingLayer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode


@dataclass
class Activations:
    """Bytes autograd keeps for backward in one pass."""

    total: int  # without checkpointing
    layers: int  # checkpointable layers found
    layer_inputs: int  # their inputs, together
    largest_layer: int  # the most one layer keeps
    in_layers: int  # what all layers keep, together

    def checkpointed(self) -> int:
        """With gradient checkpointing: everything outside the layers, the layers' inputs, and one layer
        recomputed in backward. Without checkpointable layers, the same as without."""
        if not self.layers:
            return self.total
        return self.total - self.in_layers + self.layer_inputs + self.largest_layer


class _MaskDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep):
        ctx.save_for_backward(keep)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - never run: the measurement does no backward
        return grad, None


class _FusedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask):
        # Laid out (batch, tokens, heads, dim) as the fused kernels write it, so that the
        # `transpose(1, 2).reshape` every model does next is a view (one storage), as on a device.
        batch, heads, tokens = q.shape[:-1]
        out = q.new_empty(batch, tokens, heads, v.shape[-1]).transpose(1, 2)
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse, *([mask] if isinstance(mask, torch.Tensor) else []))
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover
        return grad, None, None, None


class _RealKernels(TorchFunctionMode):
    """Dropout and sdpa keeping what their kernels on `device` keep (see the module docstring)."""

    def __init__(self, device: str):
        super().__init__()
        self.device = device
        self.in_fast_dropout = False  # set while ftcli's FastDropout (CPU: a bool mask) runs

    def _mask_dtype(self, x):
        # CUDA's fused dropout keeps a bool mask; elsewhere torch keeps the scaled float noise it
        # multiplied by, except in ftcli's FastDropout (LoRA's dropout on CPU).
        if self.device == "cuda" or (self.device == "cpu" and self.in_fast_dropout):
            return torch.bool
        return x.dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.dropout:
            x = args[0]
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            training = kwargs.get("training", args[2] if len(args) > 2 else True)
            if not training or p == 0:
                return x
            return _MaskDropout.apply(x, torch.empty(x.shape, dtype=self._mask_dtype(x), device=x.device))
        if func is torch.nn.functional.scaled_dot_product_attention:
            dropout = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if dropout and self.device != "cuda":  # torch's CPU kernel has no dropout: math, as on meta
                return func(*args, **kwargs)
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            return _FusedAttention.apply(*args[:3], mask)
        return func(*args, **kwargs)


def _flag_fast_dropout(model, kernels: _RealKernels) -> list:
    from ftcli.modeling.fast_dropout import FastDropout

    def enter(module, args):
        kernels.in_fast_dropout = True

    def leave(module, args, output):
        kernels.in_fast_dropout = False

    return [h for m in model.modules() if isinstance(m, FastDropout)
            for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]


def _checkpoint_layers(model) -> list:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def _storage_key(tensor) -> int:
    # Meta storages have no data pointer; the storage object's own address tells them apart, and
    # every storage stays alive (held by the graph) until the measurement ends, so none is reused.
    return tensor.untyped_storage()._cdata


def measure(model, inputs: dict, device: str = "cpu") -> Activations:
    """Run `model` (on the meta device, in training mode) on `inputs` (meta tensors) and count what
    autograd keeps for backward on `device` (cpu, cuda, mps), in total and per checkpointable layer."""
    weights = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}
    running = [0]

    def pack(tensor):
        key = _storage_key(tensor)
        if key not in weights and key not in saved:
            saved[key] = tensor.untyped_storage().nbytes()
            running[0] += saved[key]
        return tensor

    layers = _checkpoint_layers(model)
    entry, kept, inputs_kept = {}, [], [0]

    def before(module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        if isinstance(hidden, torch.Tensor):
            inputs_kept[0] += hidden.untyped_storage().nbytes()
        entry[id(module)] = running[0]

    def after(module, args, output):
        kept.append(running[0] - entry.pop(id(module), running[0]))

    kernels = _RealKernels(device)
    handles = _flag_fast_dropout(model, kernels)
    handles += [h for layer in layers for h in (layer.register_forward_pre_hook(before, with_kwargs=True),
                                               layer.register_forward_hook(after))]
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), kernels:
            output = model(**inputs)
        del output
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Activations(total=running[0], layers=len(kept), layer_inputs=inputs_kept[0],
                       largest_layer=max(kept, default=0), in_layers=sum(kept))
