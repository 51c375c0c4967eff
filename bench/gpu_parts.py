"""The GPU bench's own workers; bench/gpu.py runs each in a fresh interpreter (`common.worker`):

    probe          what this machine has: the GPU, torch's CUDA, the packages each part needs
    matmul         the bf16 matmul rate of the GPU (fp32 with torch's threads on CPU): MFU's denominator
    materialize    a model folder to train: the given one when it holds weights, else its config and
                   tokenizer with seeded random weights (speed and memory do not depend on their values)
    load_check     a run's saved model/ loaded with plain transformers: every key, finite, trained
    packing_check  one batch's logits packed (one row, positions restarting) vs padded, under one
                   attention kernel, against the cross-attending row that packing must never produce
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common

# module -> distribution, for every package a part of the bench needs.
PACKAGES = {"torch": "torch", "transformers": "transformers", "peft": "peft", "accelerate": "accelerate",
            "datasets": "datasets", "pydantic": "pydantic", "yaml": "PyYAML", "trl": "trl",
            "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed", "flash_attn": "flash-attn",
            "liger_kernel": "liger-kernel"}


def probe() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for module, dist in PACKAGES.items():
        try:
            found[module] = version(dist) if importlib.util.find_spec(module) else None
        except PackageNotFoundError:
            found[module] = "present (no metadata)"
    result = {"python": sys.version.split()[0], "packages": found, "ftcli_error": None, "cuda": False}
    try:  # ftcli from the tree (PYTHONPATH=src), with its own dependencies
        import ftcli.recipe  # noqa: F401
        import ftcli.training.finetune  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means the ftcli parts cannot run
        result["ftcli_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    import torch

    result["cuda"] = torch.cuda.is_available()
    result["torch_cuda"] = torch.version.cuda
    if result["cuda"]:
        props = torch.cuda.get_device_properties(0)
        result.update(device=props.name, capability=f"{props.major}.{props.minor}",
                      memory_gb=round(props.total_memory / 1e9, 1), bf16=torch.cuda.is_bf16_supported())
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return result


def matmul(device: str, n: int = 8192, repeats: int = 10) -> dict:
    """The best of three windows of `repeats` n×n×n products (bf16 on a GPU, as training's matmuls)."""
    import torch

    if device == "cpu":
        return {**common.matmul_peak(seconds=1.0, n=512), "dtype": "float32", "device": "cpu"}
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=out)
    torch.cuda.synchronize()
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        torch.cuda.synchronize()
        rates.append(2 * n ** 3 * repeats / (time.perf_counter() - t0))
    return {"flops_per_s": max(rates), "windows": rates, "n": n, "dtype": "bfloat16",
            "device": torch.cuda.get_device_name()}


def materialize(source: str, out: str, tiny: bool = False) -> dict:
    """`source` when it holds weights; else `out`: its config and tokenizer with seeded random weights.
    `tiny`: the tests' 2-layer Llama instead (the CPU check of the harness)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if tiny:
        sys.path.insert(0, str(common.ROOT / "tests"))
        from tiny_models import build_llama

        path = build_llama(Path(out))
        return {"model": str(path), "weights": "random (tests' tiny Llama)", "parameters": _count(path)}
    src = Path(source)
    if any(src.glob("*.safetensors")):
        return {"model": str(src), "weights": "pretrained", "parameters": _count(src)}
    torch.manual_seed(common.SEED)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    for name in ("generation_config.json", "chat_template.jinja"):
        if (src / name).is_file():
            shutil.copy(src / name, Path(out) / name)
    return {"model": out, "weights": "random (seeded: no weights travelled)", "parameters": _count(out)}


def _count(path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):  # torch's meta device keeps tied embeddings tied (init_empty_weights does not)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def load_check(model_dir: str, base: str) -> dict:
    """A run's saved model as a user loads it (plain transformers, no ftcli): no missing or unexpected
    keys, every base parameter there, all finite, some changed by training, and a finite loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
    reference = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    ours = model.state_dict()
    changed = sum(1 for k, v in reference.items() if k in ours and not torch.equal(ours[k], v))
    finite = all(bool(torch.isfinite(v).all()) for v in ours.values() if v.is_floating_point())
    ids = AutoTokenizer.from_pretrained(model_dir)("Arr, matey! What be the capital of Peru?", return_tensors="pt")
    with torch.no_grad():
        loss = model(input_ids=ids["input_ids"], labels=ids["input_ids"]).loss.item()
    missing, unexpected = list(info["missing_keys"]), list(info["unexpected_keys"])
    same_keys = set(reference) <= set(ours)
    ok = not missing and not unexpected and same_keys and finite and changed > 0 and math.isfinite(loss)
    return {"ok": ok, "parameters": sum(p.numel() for p in model.parameters()), "missing_keys": missing[:5],
            "unexpected_keys": unexpected[:5], "all_base_keys": same_keys, "finite": finite,
            "tensors_changed": changed, "tensors": len(reference), "loss": loss,
            "dtype_saved": str(next(iter(_saved_dtypes(model_dir)), "?"))}


def _saved_dtypes(model_dir: str) -> set:
    from safetensors import safe_open

    dtypes = set()
    for file in Path(model_dir).glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            dtypes |= {handle.get_slice(k).get_dtype() for k in list(handle.keys())[:3]}
    return dtypes


def packing_check(model: str, attention: str, device: str, dtype: str, sharpen: bool, rows: int = 6) -> dict:
    """Logits of the same examples packed and padded (ftcli's collators) under `attention`. `error` is
    packed-vs-padded, `control` is padded vs the same row with positions running on (examples attend to
    each other: what packing must never do), so error / control says how far packing is from that
    failure, whatever the weights' scale. `sharpen`: random weights get a wider init, whose logits
    depend on context enough for the control to stand out of bf16 rounding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftcli.data.collators import PackingCollator, PadCollator
    from ftcli.training.architectures import check_packing

    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype), attn_implementation=attention)
    lm = lm.to(device).eval()
    if sharpen:
        torch.manual_seed(common.SEED)
        with torch.no_grad():
            for p in lm.parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.2)
    try:
        check_packing(lm)
        accepted = True
    except Exception as exc:  # noqa: BLE001 - ftcli's refusal is a result here, not an error
        accepted = f"refused: {exc}".splitlines()[0]
    lines = (common.ROOT / "data" / "pirate" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    texts = [f"{r['prompt']}\n{r['response']}" for r in map(json.loads, lines)]
    examples = [{"input_ids": ids, "labels": ids} for ids in (tokenizer(t)["input_ids"][:64] for t in texts)]
    lengths = [len(e["input_ids"]) for e in examples]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    padded = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)(examples)
    packed = PackingCollator()(examples)
    cross = {**packed, "position_ids": torch.arange(sum(lengths)).unsqueeze(0)}

    def logits(batch) -> torch.Tensor:
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            return lm(**inputs).logits.float().cpu()

    flat = logits(packed)[0]
    crossed = logits(cross)[0]
    rows_out = logits(padded)
    pad = torch.cat([rows_out[i, :n] for i, n in enumerate(lengths)])
    later = slice(lengths[0], None)  # the first example sees nothing before it either way
    error = (flat - pad).abs().max().item()
    control = (crossed[later] - pad[later]).abs().max().item()
    loss = torch.nn.functional.cross_entropy
    targets = torch.cat([torch.tensor(e["input_ids"][1:]) for e in examples])
    keep = torch.tensor([s + j for s, n in zip(starts, lengths) for j in range(n - 1)])
    packed_loss, padded_loss = loss(flat[keep], targets).item(), loss(pad[keep], targets).item()
    ratio = error / control if control else float("inf")
    return {"attention": attention, "dtype": dtype, "device": device, "examples": len(examples),
            "tokens": sum(lengths), "packed_loss": packed_loss, "padded_loss": padded_loss,
            "loss_rel_diff": abs(packed_loss - padded_loss) / abs(padded_loss), "max_logit_error": error,
            "max_logit_control": control, "error_over_control": ratio, "ftcli_accepts_packing": accepted,
            "ok": ratio < 0.1 and math.isfinite(packed_loss)}


if __name__ == "__main__":
    common.worker_main({"probe": probe, "matmul": matmul, "materialize": materialize, "load_check": load_check,
                        "packing_check": packing_check})
