"""The shipped FSDP and DeepSpeed recipes on one GPU, for bench/gpu.py, and the kit a GPU machine
without internet needs (`bash bench/gpu.sh --prepare`).

World size 1 (torch's elastic launcher, one process) still takes the engines' sharded save path end to
end: FSDP gathers its full state dict, ZeRO-3 gathers its 16-bit weights on rank 0. The saved model/
is then loaded with plain transformers (gpu_parts.load_check). On CPU (`--cpu`) ftcli refuses FSDP and
DeepSpeed (they need GPUs), so the same recipes run without their distributed section: the launcher,
the recipe overrides and the load check are what that run checks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import common

RECIPES = {"fsdp": "recipes/smollm2-full-fsdp.yaml", "zero2": "recipes/demo-smollm2-lora-zero2.yaml",
           "zero3": "recipes/smollm2-full-zero3.yaml"}
ENGINES = {"fsdp": "FSDP full_shard", "zero2": "DeepSpeed ZeRO-2 (LoRA)", "zero3": "DeepSpeed ZeRO-3"}
OPTIONAL = ("trl", "bitsandbytes", "deepspeed", "flash_attn", "liger_kernel")
PARTS_AFTER_PROBE = ["model", "matmul", "flops", "sft-ftcli", "sft-trl", "qlora", "packing-sdpa", "packing-flash",
                     *RECIPES]
STEPS = 8  # optimizer steps per run: enough to change every weight, short enough for the budget


def recipe_for(name: str, model: str, work: Path, gpu: bool) -> Path:
    """The shipped recipe on `model`, for a few steps in bf16, written into `work`."""
    import yaml

    raw = yaml.safe_load((common.ROOT / RECIPES[name]).read_text(encoding="utf-8"))
    raw["model"]["name_or_path"] = model
    raw["data"]["train"] = str(common.ROOT / raw["data"]["train"])
    raw["train"].update(output_dir=str(work / name), max_steps=STEPS, logging_steps=2, report_to=["none"])
    section = raw.get("distributed") or {}
    if isinstance(section.get("deepspeed"), str):  # relative to the launch directory: made absolute
        section["deepspeed"] = str(common.ROOT / section["deepspeed"])
    if gpu:
        raw["train"]["precision"] = "bf16"
    else:
        raw.pop("distributed", None)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def tail(log: Path, lines: int = 15) -> str:
    return "".join(log.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def launch(recipe: Path, log: Path, timeout: float) -> None:
    """`ftcli finetune` under torch's elastic launcher, one process; the whole group is killed past
    `timeout` (torchrun's ranks run in sessions of their own)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "ftcli", "finetune", str(recipe)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=common.ROOT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"timed out after {timeout:.0f}s; end of {log}:\n{tail(log)}") from None
    if code:
        raise RuntimeError(f"exit {code}; end of {log}:\n{tail(log)}")


def part(bench, name: str, model: str, work: Path, gpu: bool):
    def run(timeout: float) -> dict:
        t0 = time.monotonic()
        launch(recipe_for(name, model, work, gpu), bench.log_dir / name / "finetune.log", max(timeout - 60, 10))
        launched = time.monotonic() - t0
        run_dir = work / name
        results = json.loads((run_dir / "train_results.json").read_text(encoding="utf-8"))
        check = common.worker("gpu_parts.py", "load_check", {"model_dir": str(run_dir / "model"), "base": model},
                              log_dir=bench.log_dir / name, timeout=max(timeout - launched, 10))
        return {**check, "engine": ENGINES[name] if gpu else "CPU stand-in (no distributed section)",
                "launch_s": round(launched, 1), "train_runtime": results.get("train_runtime"),
                "train_loss": results.get("train_loss"), "peak_memory_bytes": results.get("peak_memory_bytes")}
    return run


def run_all(bench, model: str, work: Path, gpu: bool, packages: dict, no_ftcli: str | None) -> None:
    for name in RECIPES:
        why = no_ftcli or ("deepspeed not installed" if gpu and name.startswith("zero") and not packages["deepspeed"]
                           else None)
        bench.run(name, part(bench, name, model, work, gpu), 150, why)


def describe(r: dict) -> str:
    peak = f", peak {r['peak_memory_bytes'] / 2**20:.0f} MB" if r.get("peak_memory_bytes") else ""
    loads = "loads with plain transformers" if r["ok"] else (
        f"does NOT load cleanly (missing {r['missing_keys']}, unexpected {r['unexpected_keys']}, "
        f"finite {r['finite']}, changed {r['tensors_changed']})")
    return (f"{r['engine']}: train {r['train_runtime']:.1f}s, loss {r['train_loss']:.3f}{peak}; model/ ({r['dtype_saved']}) "
            f"{loads}, {r['tensors_changed']}/{r['tensors']} tensors changed")


def prepare(kit: Path, kit_model: Path) -> int:
    """The kit: SmolLM2's config and tokenizer (its 0.5 GB of weights cannot travel: the GPU run uses
    seeded random ones) and the Alpaca rows of the sft workload, if this machine has them."""
    if not (common.SMOL / "config.json").is_file():
        print(f"{common.SMOL} not found: run `make models` first", file=sys.stderr)
        return 1
    shutil.rmtree(kit, ignore_errors=True)
    kit_model.mkdir(parents=True)
    for file in common.SMOL.iterdir():
        if file.is_file() and file.suffix not in (".safetensors", ".bin", ".gguf"):
            shutil.copy(file, kit_model / file.name)
    alpaca = common.DATA / "alpaca" / "alpaca_5000.json"
    if alpaca.is_file():
        (kit / "data" / "alpaca").mkdir(parents=True)
        shutil.copy(alpaca, kit / "data" / "alpaca" / alpaca.name)
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    print(f"wrote {kit} ({size / 2**20:.1f} MiB{'' if alpaca.is_file() else '; no Alpaca data here: pirate rows instead'})")
    shown = kit.relative_to(common.ROOT) if kit.is_relative_to(common.ROOT) else kit
    print(f"on the GPU machine: carry {shown} (and .whl/, wheels of missing packages: bench/README.md), "
          "then run: bash bench/gpu.sh")
    return 0
