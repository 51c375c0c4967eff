"""How much memory a training run needs at its peak, part by part, and what it measured.

The parts (bytes), from the run's model built on the meta device (`meta_model`):
- weights: every base parameter in its dtype; a quantized linear layer's weight in its bits plus
  bitsandbytes' constants (4-bit: 64 weights share one absmax, itself 8-bit under double quantization).
- trainable: what LoRA adds (adapters, modules_to_save copies); 0 for a full fine-tune, whose trainable
  parameters are the weights.
- gradients: one per trainable parameter, in its dtype.
- optimizer: the states `train.optim` keeps per trainable parameter (`optimizer_state_bytes`).
- activations: what one forward pass keeps for backward (`activations`, with or without checkpointing).
- logits: the LM head's output, its float32 log-softmax and their gradients, on the positions the loss
  reads (label positions only under ftcli's causal-LM loss).
On a CPU the peak is the process's resident memory, so it also counts the process before the model
(Python, torch and the libraries, the data: measured, `current_rss`) and what glibc's heap keeps of the
buffers a pass frees (`heap_bytes`).
On a GPU it is what `torch.cuda.max_memory_allocated` reports: the tensors alone.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from typing import Any

# glibc's heap keeps buffers a CPU pass frees (its dynamic mmap threshold moves them off mmap after the
# first free), as a fraction of the activations the pass would keep without checkpointing, which its
# transient tensors scale with. SmolLM2-135M + LoRA, first pass of 6 x 83 tokens: 812 MB kept, 1,489 MB
# more resident (checkpointed: 63 MB kept, 666 MB more); with MALLOC_MMAP_THRESHOLD_ fixed, none of it.
CPU_HEAP_OVERHEAD = 0.7

# Bytes of optimizer state per trainable parameter: a multiple of the parameter's own size ("x"), or
# fixed bytes. Each name is a transformers OptimizerNames value (tests/test_plan.py checks them).
_ADAM = ("x", 2)
OPTIMIZER_STATES = {
    **dict.fromkeys(("adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused",
                     "adamw_anyprecision", "stable_adamw", "schedule_free_adamw",
                     "schedule_free_radam", "grokadamw", "galore_adamw", "galore_adamw_layerwise",
                     "apollo_adamw", "apollo_adamw_layerwise"), _ADAM),
    **dict.fromkeys(("paged_adamw_32bit",), ("bytes", 8)),
    **dict.fromkeys(("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "adamw_torch_8bit",
                     "galore_adamw_8bit", "galore_adamw_8bit_layerwise"), ("8bit", 2)),
    "adamw_torch_4bit": ("bytes", 1),
    **dict.fromkeys(("ademamix", "paged_ademamix_32bit"), ("bytes", 12)),
    **dict.fromkeys(("ademamix_8bit", "paged_ademamix_8bit"), ("8bit", 3)),
    **dict.fromkeys(("lion_32bit", "paged_lion_32bit", "rmsprop_bnb", "rmsprop_bnb_32bit"), ("bytes", 4)),
    **dict.fromkeys(("lion_8bit", "paged_lion_8bit", "rmsprop_bnb_8bit"), ("8bit", 1)),
    **dict.fromkeys(("rmsprop", "adagrad", "schedule_free_sgd"), ("x", 1)),
    **dict.fromkeys(("sgd", "lomo"), ("x", 0)),
    **dict.fromkeys(("adafactor", "adalomo", "galore_adafactor", "galore_adafactor_layerwise"), ("factored", 1)),
}
# bitsandbytes keeps small tensors' states in 32 bits, and one float32 absmax per 256 values otherwise.
_BNB_8BIT_MIN_SIZE = 4096


@dataclass
class MemoryEstimate:
    """A run's peak memory by part (bytes); `total` is the peak, not the sum, where they differ."""

    device: str  # cpu | cuda | mps
    weights: int
    weights_by_kind: dict[str, int]  # "float32", "bfloat16", "nf4 4-bit", "int8 8-bit", ...
    trainable: int
    gradients: int
    optimizer: int
    activations: int  # as the recipe trains (gradient checkpointing or not)
    activations_checkpointed: int
    activations_plain: int
    logits: int
    checkpointing: bool = False  # whether the recipe trains with gradient checkpointing
    baseline: int = 0  # CPU: the process before the model
    heap: int = 0  # CPU: freed activation buffers glibc keeps
    load: int = 0  # CPU: resident while loading (the checkpoint read through mmap beside what it becomes)
    dtype: Any = None  # the torch dtype the passes compute in
    notes: list[str] = field(default_factory=list)

    @property
    def static(self) -> int:
        return self.weights + self.trainable + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        training = self.baseline + self.static + self.activations + self.logits + self.heap
        return max(training, self.baseline + self.load)


def heap_bytes(activations_plain: int, reused: int) -> int:
    """What glibc's heap keeps resident of the buffers CPU passes free: CPU_HEAP_OVERHEAD of the
    activations without checkpointing, less what gradients and optimizer states (`reused`, allocated
    as backward frees them) take over. A full fine-tune's gradients and AdamW states absorb it all:
    SmolLM2-135M, 2 passes of 6 x 83 tokens, peak RSS 3.47 GB; 4.1 GB estimated without this."""
    return max(0, int(CPU_HEAP_OVERHEAD * activations_plain) - reused)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters, as finetune reports them: peft's own count for an adapter model,
    which counts a 4-bit weight's values rather than the bytes they are packed in."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def optimizer_state_bytes(parameters, optim: str | None) -> tuple[int, bool]:
    """Bytes of optimizer state for `parameters` (the trainable ones) under `optim` (None: Trainer's
    default, AdamW), and whether the optimizer is one this table knows (else AdamW is assumed)."""
    kind, amount = OPTIMIZER_STATES.get(optim or "adamw_torch", _ADAM)
    total = 0
    for p in parameters:
        n, size = p.numel(), p.element_size()
        if kind == "x":
            total += n * size * amount
        elif kind == "bytes":
            total += n * amount
        elif kind == "8bit":
            total += n * amount * (1 + 4 / 256) if n >= _BNB_8BIT_MIN_SIZE else n * 4 * amount
        elif p.dim() >= 2:  # factored second moment (Adafactor): a row and a column statistic
            total += (p.shape[:-1].numel() + p.shape[:-2].numel() * p.shape[-1]) * size
        else:
            total += n * size
    return int(total), optim is None or optim in OPTIMIZER_STATES


def quantized_bytes(weight, bits: int, double_quant: bool) -> int:
    """A linear weight as bitsandbytes holds it: 4-bit packs two per byte with one absmax per 64
    (8-bit, plus one float32 per 256 of those, under double quantization); 8-bit (LLM.int8) is one
    byte each and one float32 scale per output row."""
    n = weight.numel()
    if bits == 8:
        return n + weight.shape[0] * 4
    absmax = n / 64 + n / 64 / 256 * 4 if double_quant else n / 64 * 4
    return int(n / 2 + absmax)


def split_parameters(model, quantized: set[int], quantization) -> tuple[dict[str, int], int]:
    """(weights by kind, trainable bytes). Under LoRA the frozen base is the weights, by dtype or, for
    the quantized ones (ids in `quantized`), by bits; what trains is the adapter's. A full fine-tune's
    weights are its trainable parameters."""
    adapter = hasattr(model, "peft_config")
    kinds: dict[str, int] = {}
    trainable = 0
    for p in model.parameters():
        if adapter and p.requires_grad:
            trainable += p.numel() * p.element_size()
            continue
        if id(p) in quantized:
            kind = f"{quantization.type} 4-bit" if quantization.bits == 4 else "int8 8-bit"
            size = quantized_bytes(p, quantization.bits, bool(quantization.double_quant))
        else:
            kind, size = str(p.dtype).removeprefix("torch."), p.numel() * p.element_size()
        kinds[kind] = kinds.get(kind, 0) + size
    return kinds, trainable


def quantized_weights(base) -> set[int]:
    """The weights bitsandbytes quantizes in `base` (a transformers model, before LoRA): every linear
    layer's but those transformers keeps in full precision (output embeddings, tied and last modules).
    `get_keys_to_not_convert` is transformers' own choice, read here alone (tests/test_plan.py checks
    it against a real 4-bit load)."""
    import torch
    from transformers.quantizers.base import get_keys_to_not_convert

    keep = get_keys_to_not_convert(base)
    return {id(module.weight) for name, module in base.named_modules() if isinstance(module, torch.nn.Linear)
            and not any(name == k or name.endswith(f".{k}") or name.startswith(f"{k}.") for k in keep)}


def logits_bytes(positions: int, outputs: int, dtype_size: int) -> int:
    """The head's logits for `positions` rows of `outputs` classes, their float32 copy (when not float32)
    and log-softmax, and both gradients at the start of backward."""
    upcast = 4 if dtype_size != 4 else 0
    return positions * outputs * (2 * dtype_size + 2 * 4 + upcast)


def human_bytes(n: int) -> str:
    """1.2 GB, 840 MB, 12 kB (decimal units, as free(1) -h and the Hub show sizes)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"


def current_rss() -> int:
    """This process's resident memory now (Linux /proc; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """This process's resident high-water mark: Python, torch, the libraries, data and model together.
    Linux's VmHWM, not getrusage's ru_maxrss: that one survives exec, so a run started by a large
    process (a notebook, a test session) would report its parent's size at the fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def peak_memory_bytes(device: str) -> int:
    """The measured peak of a run in this process: CUDA's max allocated on a GPU, peak RSS elsewhere."""
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return peak_rss()


def capacity(device: str) -> tuple[int, str]:
    """Memory a run may use on `device`, and what it is: a GPU's total memory, or a CPU machine's
    available RAM (Linux MemAvailable, plus this process's own, which the run will have instead)."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), f"{props.name} memory"
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"] + current_rss(), "available RAM"
    except (OSError, KeyError):
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "RAM"
