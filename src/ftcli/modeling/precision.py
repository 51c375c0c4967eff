"""What a recipe's precision and kernel settings mean on this machine: the weights' dtype, the mixed
precision Trainer runs, the attention kernel, and whether the optimizer's and kernels' packages are
here. One function, `resolve`, decides all of it before any data or model work, for `finetune`,
`validate` and `plan`, and raises one UserError listing every setting this machine cannot honour.

What transformers 5 and accelerate would do otherwise, and why each is refused here:
- fp16 on CPU: accelerate autocasts fp16 only on GPUs, so Trainer would silently train in fp32.
- bf16 on a CUDA GPU without bfloat16 (before Ampere): TrainingArguments refuses it with a message
  about `use_cpu`; a bfloat16 model there would run emulated, far slower than float32.
- flash_attention_2 on float32 compute: flash-attn takes only float16/bfloat16 tensors.
- an optimizer from a package that is missing: Trainer would fail after the model and data are loaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ftcli.errors import UserError

DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # weight dtype -> mixed-precision name

# Optimizers whose package is not torch: the module to find, and what to install. Each group is checked
# against transformers' own lists by tests/test_precision.py, so a renamed or added optimizer shows there.
BITSANDBYTES_OPTIMIZERS = ("adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit",
                           "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
                           "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit",
                           "rmsprop_bnb_32bit")
OPTIMIZER_PACKAGES = {
    **dict.fromkeys(BITSANDBYTES_OPTIMIZERS, ("bitsandbytes", "pip install 'ftcli[quant]' (or pip install bitsandbytes)")),
    **dict.fromkeys(("adamw_torch_4bit", "adamw_torch_8bit"), ("torchao", "pip install torchao")),
    **dict.fromkeys(("galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                     "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise"), ("galore_torch", "pip install galore-torch")),
    **dict.fromkeys(("apollo_adamw", "apollo_adamw_layerwise"), ("apollo_torch", "pip install apollo-torch")),
    **dict.fromkeys(("schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd"),
                    ("schedulefree", "pip install schedulefree")),
    **dict.fromkeys(("lomo", "adalomo"), ("lomo_optim", "pip install lomo-optim")),
    "grokadamw": ("grokadamw", "pip install grokadamw"),
    "stable_adamw": ("optimi", "pip install torch-optimi"),
    "adamw_anyprecision": ("torchdistx", "install torchdistx (see its README)"),
    "adamw_torch_xla": ("torch_xla", "run on a TPU machine with torch_xla"),
    "adamw_torch_npu_fused": ("torch_npu", "run on an Ascend NPU machine with torch_npu"),
}


@dataclass(frozen=True)
class Precision:
    """A recipe's precision settings as they run on this machine."""

    device: str  # cuda | mps | cpu
    dtype: str  # float32 | bfloat16 | float16: the weights as loaded
    mixed: str  # fp32 | bf16 | fp16: Trainer's autocast
    attention: str | None  # sdpa | eager | flash_attention_2, or None for transformers' choice

    def load_kwargs(self) -> dict:
        """from_pretrained / from_config options: an explicit dtype always (transformers 5 would otherwise
        load a checkpoint in its saved dtype: bfloat16 for most hub models, even on a CPU)."""
        import torch

        kwargs = {"dtype": getattr(torch, self.dtype)}
        if self.attention is not None:
            kwargs["attn_implementation"] = self.attention
        return kwargs

    def training_kwargs(self) -> dict:
        """TrainingArguments options. On a machine without a GPU TrainingArguments takes bf16 only with
        use_cpu (it would look for a bf16 GPU)."""
        return {"bf16": self.mixed == "bf16", "fp16": self.mixed == "fp16",
                **({"use_cpu": True} if self.device == "cpu" and self.mixed == "bf16" else {})}


def device_kind() -> str:
    """The device Trainer will train on: cuda, mps or cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def bf16_supported(device: str) -> bool:
    """CPUs compute bfloat16 (autocast and weights); CUDA GPUs from Ampere on; Apple GPUs on macOS 14+."""
    if device == "cpu":
        return True
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    from transformers.utils import is_torch_bf16_gpu_available

    return is_torch_bf16_gpu_available()


def resolve(recipe) -> Precision:
    """The recipe's dtype, mixed precision, attention, optimizer and kernels on this machine; one
    UserError naming every setting it cannot honour (with what to set instead)."""
    device = device_kind()
    problems: list[str] = []
    mixed = _mixed_precision(recipe.train.precision, device, problems)
    dtype = _weights_dtype(recipe, device, mixed, problems)
    attention = _attention(recipe.model.attn_implementation, device, dtype, mixed, problems)
    _optimizer_installed(recipe.train.optim, problems)
    _liger_usable(recipe.train.liger_kernel, device, problems)
    if problems:
        where = {"cuda": "this CUDA GPU", "mps": "this Apple GPU", "cpu": "this machine (no GPU)"}[device]
        raise UserError(f"the recipe asks for what {where} cannot do:\n" + "\n".join(f"  {p}" for p in problems))
    return Precision(device, dtype, mixed, attention)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def _mixed_precision(setting: str, device: str, problems: list[str]) -> str:
    if setting == "auto":
        if device == "cuda":
            return "bf16" if bf16_supported(device) else "fp16"
        return "fp32"  # CPU: bf16 autocast is slower than fp32 on most CPUs; Apple GPUs: fp32 is the safe default
    if setting == "fp16" and device == "cpu":
        problems.append("train.precision: fp16 needs a GPU: on CPU Trainer's fp16 does nothing (the run would "
                        "silently train in fp32); use bf16 (CPU autocast) or fp32")
    if setting == "bf16" and not bf16_supported(device):
        gpu = f" ({_gpu_name()})" if device == "cuda" else ""
        problems.append(f"train.precision: bf16 needs bfloat16 support, which this GPU{gpu} lacks (CUDA: Ampere "
                        "or newer); use fp16 or auto")
    return setting


def _weights_dtype(recipe, device: str, mixed: str, problems: list[str]) -> str:
    setting = recipe.model.dtype
    if setting == "auto":
        # LoRA's base is frozen: bfloat16 halves its memory where the GPU computes it natively, and the
        # adapters stay float32. A full fine-tune keeps float32 master weights under any autocast (as
        # LLaMA-Factory does): at fine-tuning learning rates most updates are smaller than half a bfloat16
        # step of the weight they change, and would round away. model.dtype: bfloat16 asks for that anyway.
        half = device == "cuda" and bf16_supported(device) and recipe.lora is not None
        return "bfloat16" if half else "float32"
    if setting == "bfloat16" and device == "cuda" and not bf16_supported(device):
        problems.append(f"model.dtype: bfloat16 is emulated on this GPU ({_gpu_name()}, before Ampere), far slower "
                        "than float32; use float16 with lora:, or float32")
    return setting


def _attention(setting: str, device: str, dtype: str, mixed: str, problems: list[str]) -> str | None:
    if setting == "auto":
        return None
    if setting == "flash_attention_2":
        if device != "cuda":
            problems.append("model.attn_implementation: flash_attention_2 needs a CUDA GPU; use sdpa (or auto)")
        elif importlib.util.find_spec("flash_attn") is None:
            problems.append("model.attn_implementation: flash_attention_2 needs the flash-attn package: "
                            "pip install flash-attn --no-build-isolation (or use sdpa)")
        if dtype == "float32" and mixed == "fp32":
            # Under bf16/fp16 autocast transformers casts q, k, v to the autocast dtype for flash-attn.
            problems.append("model.attn_implementation: flash_attention_2 computes in float16/bfloat16 only: set "
                            "train.precision: bf16 (or fp16) or model.dtype: bfloat16, or use sdpa")
    return setting


def _optimizer_installed(name: str | None, problems: list[str]) -> None:
    if name in OPTIMIZER_PACKAGES:
        module, install = OPTIMIZER_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            problems.append(f"train.optim: {name} needs the {module} package: {install}")


def _liger_usable(wanted: bool, device: str, problems: list[str]) -> None:
    if not wanted:
        return
    if device != "cuda":
        problems.append("train.liger_kernel: Liger's kernels are Triton kernels for CUDA GPUs; set it to false here")
    elif importlib.util.find_spec("liger_kernel") is None:
        problems.append("train.liger_kernel needs the liger-kernel package: pip install liger-kernel")


def record(precision: Precision, model, attention: str | None) -> dict:
    """What train_results.json says the run trained in: the weights' dtype as loaded (the unquantized
    ones of a quantized model), the mixed precision, and the attention kernel the model ran."""
    return {"dtype": str(model.dtype).removeprefix("torch."), "precision": precision.mixed,
            "attn_implementation": attention}
