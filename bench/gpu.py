"""bench/gpu.sh's driver: the GPU benchmark as one prepared run of at most --budget seconds (8 minutes).

    bash bench/gpu.sh --prepare   # here: the kit a GPU machine without internet needs (bench/README.md)
    bash bench/gpu.sh             # on the GPU machine: every part, one summary (JSON and a table)
    bash bench/gpu.sh --cpu       # anywhere: the same parts on a tiny model on CPU, to check the harness

Parts, in order; one whose GPU, package or time is missing is reported as not run, with why:
  probe, model, matmul (the bf16 rate), flops, sft-ftcli and sft-trl (the sft workload in bf16),
  qlora (ftcli, 4-bit NF4), packing-sdpa and packing-flash (packed vs padded logits), and fsdp, zero2,
  zero3 (the shipped recipes at world size 1, their saved model loaded with plain transformers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common
import gpu_sharded
import sft

RESULTS = common.ROOT / "bench" / "results"
KIT = RESULTS / "gpu-kit"  # what --prepare writes and a device call carries
KIT_MODEL = KIT / "smollm2-135m-instruct"
MIN_STEP_S = 20  # a part is not started with less time than this left
QLORA = {"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}


class Bench:
    """The parts run so far, each ok / failed / not run with why, inside one time budget."""

    def __init__(self, budget: float, log_dir: Path, slack: float = 1.0):
        self.budget, self.deadline, self.log_dir = budget, time.monotonic() + budget, log_dir
        self.slack = slack  # each part's own cap is multiplied by this (--cpu: a slow, maybe shared CPU)
        self.steps: list[dict] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, name: str, why: str) -> None:
        self.steps.append({"step": name, "status": "not run", "why": why})

    def run(self, name: str, fn, cap: float, why_not: str | None = None) -> dict | None:
        """fn(timeout) -> result dict (its "ok", when present, says whether the part passed)."""
        if why_not:
            return self.skip(name, why_not)
        if self.left() < MIN_STEP_S:
            return self.skip(name, f"time budget ({self.budget:.0f}s) spent")
        t0 = time.monotonic()
        try:
            result = fn(min(cap * self.slack, self.left()))
        except Exception as exc:  # noqa: BLE001 - a failed part is reported, the others still run
            self.steps.append({"step": name, "status": "failed", "why": str(exc).strip()[:1500],
                               "wall_s": round(time.monotonic() - t0, 1)})
            return None
        status = "ok" if result.get("ok", True) else "failed"
        self.steps.append({"step": name, "status": status, "wall_s": round(time.monotonic() - t0, 1),
                           "result": result, "why": "" if status == "ok" else "its check did not hold"})
        return result

    def worker(self, name: str, script: str, role: str, args: dict, env: dict | None = None):
        return lambda timeout: common.worker(script, role, args, env=env, log_dir=self.log_dir / name,
                                             timeout=timeout)


def chat_data(work: Path, rows: int) -> tuple[str, str]:
    """The sft workload's chats: the Alpaca rows when here (or carried), else the repo's pirate rows."""
    try:
        return sft.write_data(work, rows), "alpaca"
    except FileNotFoundError:
        path = work / "pirate-chats.jsonl"
        lines = (common.ROOT / "data" / "pirate" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
        with open(path, "w", encoding="utf-8") as f:
            for row in map(json.loads, lines):
                f.write(json.dumps({"messages": [{"role": "user", "content": row["prompt"]},
                                                 {"role": "assistant", "content": row["response"]}]}) + "\n")
        return str(path), "pirate (no Alpaca data here)"


def model_source(given: str | None) -> Path | None:
    candidates = [Path(given)] if given else [common.SMOL, KIT_MODEL]
    return next((p for p in candidates if (p / "config.json").is_file()), None)


def sft_metrics(result: dict, count: dict | None, machine: dict | None) -> dict:
    """tokens/s, and MFU against the measured matmul rate (the sft workload's definition)."""
    result["tokens_per_s"] = result["tokens"] / result["train_s"]
    if count and machine:
        useful = sum(count["a"] * n + count["b"] * n * n for n in result["row_lengths"])
        result["mfu"] = useful / result["train_s"] / machine["flops_per_s"]
    result.pop("row_lengths", None)
    return result


def run_all(args, bench: Bench, work: Path) -> dict:
    gpu = not args.cpu
    probe = bench.run("probe", bench.worker("probe", "gpu_parts.py", "probe", {}), 120)
    if probe is None:
        return {}
    if gpu and not probe["cuda"]:
        why = "no CUDA GPU here (torch.cuda.is_available() is False); bash bench/gpu.sh --cpu checks the harness"
        for name in gpu_sharded.PARTS_AFTER_PROBE:
            bench.skip(name, why)
        return probe
    pk = probe["packages"]
    no_ftcli = f"ftcli does not import: {probe['ftcli_error']}" if probe["ftcli_error"] else None
    source = model_source(args.model)
    kit = bench.run("model", bench.worker("model", "gpu_parts.py", "materialize",
                                          {"source": str(source), "out": str(work / "model"),
                                           "tiny": args.cpu and not args.model}), 180,
                    None if source or args.cpu else f"no model: run `bash bench/gpu.sh --prepare` and carry {KIT}")
    machine = bench.run("matmul", bench.worker("matmul", "gpu_parts.py", "matmul",
                                               {"device": "cuda" if gpu else "cpu"}), 90)
    if kit is None:
        for name in gpu_sharded.PARTS_AFTER_PROBE[2:]:
            bench.skip(name, "no model to train (see the model part)")
        return probe
    model = kit["model"]
    sizes = {"rows": 240, "steps": 30, "max_length": 256} if gpu else {"rows": 16, "steps": 2, "max_length": 64}
    data, data_kind = chat_data(work, sizes["rows"])
    count = bench.run("flops", bench.worker("flops", "sft.py", "flops", {"model": model}), 120)
    shared = {"data": data, "steps": sizes["steps"], "max_length": sizes["max_length"], "rows_trained": sizes["rows"]}
    bf16 = {"model.name_or_path": model, "model.dtype": "bfloat16", "train.precision": "bf16"}
    runs = {}
    for name, role, extra, why_not in (
            ("sft-ftcli", "ftcli", {"overrides": bf16}, no_ftcli),
            ("sft-trl", "trl", {"model": model, "bf16": True}, None if pk["trl"] else "trl not installed"),
            ("qlora", "ftcli", {"overrides": {**bf16, "model.quantization": QLORA}},
             no_ftcli or (None if pk["bitsandbytes"] else "bitsandbytes not installed"))):
        env = {"FTCLI_CACHE_DIR": str(work / f"cache-{name}")}
        result = bench.run(name, bench.worker(name, "sft.py", role, {**shared, **extra, "out": str(work / name)}, env),
                           150, why_not)
        if result is not None:
            runs[name] = sft_metrics(result, count, machine)
            result["data"] = data_kind
    dtype, device = ("bfloat16", "cuda") if gpu else ("float32", "cpu")
    sharpen = not kit["weights"].startswith("pretrained")
    flash_why = no_ftcli or ("needs a CUDA GPU" if not gpu else None if pk["flash_attn"] else "flash_attn not installed")
    for attention, why_not in (("sdpa", no_ftcli), ("flash_attention_2", flash_why)):
        name = "packing-" + ("flash" if attention.startswith("flash") else attention)
        bench.run(name, bench.worker(name, "gpu_parts.py", "packing_check",
                                     {"model": model, "attention": attention, "device": device, "dtype": dtype,
                                      "sharpen": sharpen}), 90, why_not)
    gpu_sharded.run_all(bench, model, work, gpu, pk, no_ftcli)
    return probe


def checks(steps: list[dict]) -> list[dict]:
    """The lines a reader looks for first, from the parts that ran."""
    got = {s["step"]: s.get("result") for s in steps if s.get("result")}
    out = []
    if got.get("sft-ftcli") and got.get("sft-trl"):
        ratio = got["sft-ftcli"]["tokens_per_s"] / got["sft-trl"]["tokens_per_s"]
        out.append({"check": "sft bf16: ftcli tokens/s vs TRL", "value": f"{ratio:.2f}x", "ok": ratio >= 1.0})
    if got.get("qlora") and got.get("sft-ftcli") and "peak_cuda_mb" in got["qlora"]:
        q, b = got["qlora"]["peak_cuda_mb"], got["sft-ftcli"]["peak_cuda_mb"]
        out.append({"check": "qlora peak CUDA memory vs bf16 LoRA", "value": f"{q:.0f} vs {b:.0f} MB", "ok": q < b})
    for name in ("packing-sdpa", "packing-flash", "fsdp", "zero2", "zero3"):
        if got.get(name):
            out.append({"check": f"{name}: {'packed = padded' if 'packing' in name else 'saved model loads'}",
                        "value": describe(name, got[name]), "ok": bool(got[name]["ok"])})
    return out


def describe(name: str, r: dict) -> str:
    """One line per part for the table."""
    mem = f", peak {r['peak_cuda_mb']:.0f} MB CUDA" if "peak_cuda_mb" in r else f", peak RSS {r.get('peak_rss_mb', 0):.0f} MB"
    if name == "probe":
        return (f"{r.get('device', 'no GPU')}, torch CUDA {r['torch_cuda']}; "
                + ", ".join(f"{k} {v or '-'}" for k, v in r["packages"].items() if k in gpu_sharded.OPTIONAL))
    if name == "model":
        return f"{r['parameters']:,} parameters, {r['weights']}"
    if name == "flops":
        return f"{(r['a'] * 256 + r['b'] * 256 ** 2) / 1e9:.2f} GFLOP per 256-token row (forward + backward, LoRA)"
    if name == "matmul":
        return f"{r['flops_per_s'] / 1e12:.1f} TFLOP/s {r['dtype']} ({r['n']}^3 mm)"
    if name.startswith("sft") or name == "qlora":
        mfu = f", MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
        return f"{r['tokens_per_s']:.0f} tokens/s{mfu}, train {r['train_s']:.1f}s, loss {r['final_loss']:.4f}{mem}"
    if name.startswith("packing"):
        return (f"loss packed {r['packed_loss']:.4f} vs padded {r['padded_loss']:.4f}; logit error "
                f"{r['max_logit_error']:.2g} = {r['error_over_control']:.3f} x cross-attention's")
    if name in gpu_sharded.RECIPES:
        return gpu_sharded.describe(r)
    return ""


def write(summary: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    device_out = os.environ.get("OUT")  # the device machine's folder that comes back
    if device_out and Path(device_out).is_dir():
        shutil.copy(out, Path(device_out) / "gpu.json")
        logs = sorted(Path(summary["log_dir"]).rglob("*.log"))
        with open(Path(device_out) / "gpu-logs.txt", "w", encoding="utf-8") as f:
            for log in logs:
                f.write(f"===== {log}\n" + "".join(log.read_text(errors="replace").splitlines(True)[-150:]))


def print_table(summary: dict) -> None:
    rows = [{"part": s["step"], "status": s["status"],
             "result": describe(s["step"], s["result"]) if s.get("result") else "",
             "why": s.get("why", "").splitlines()[0][:160] if s.get("why") else ""} for s in summary["steps"]]
    print(common.table(rows, ["part", "status", "result", "why"]))
    if summary["checks"]:
        print()
        print(common.table([{**c, "ok": "PASS" if c["ok"] else "FAIL"} for c in summary["checks"]],
                           ["check", "value", "ok"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny model on CPU: checks the harness, numbers mean nothing")
    parser.add_argument("--prepare", action="store_true", help=f"write {KIT.relative_to(common.ROOT)} (what to carry)")
    parser.add_argument("--budget", type=float, help="seconds for every part together (default 480; --cpu: 1800)")
    parser.add_argument("--model", help="a model folder to train (default: models/smollm2-135m-instruct, else the kit)")
    parser.add_argument("--out", default=str(RESULTS / "gpu.json"))
    args = parser.parse_args()
    args.budget = args.budget or (1800 if args.cpu else 480)
    if args.prepare:
        return gpu_sharded.prepare(KIT, KIT_MODEL)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ftcli-gpu-bench-") as tmp:
        log_dir = RESULTS / "gpu"
        shutil.rmtree(log_dir, ignore_errors=True)
        bench = Bench(args.budget, log_dir, slack=5.0 if args.cpu else 1.0)
        probe = run_all(args, bench, Path(tmp))
        summary = {"mode": "cpu" if args.cpu else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "budget_s": args.budget, "wall_s": round(time.monotonic() - started, 1), "machine": probe,
                   "log_dir": str(log_dir), "steps": bench.steps, "checks": checks(bench.steps)}
        write(summary, Path(args.out))
    print_table(summary)
    print(f"\nsummary: {args.out} ({summary['wall_s']:.0f}s of {args.budget:.0f}s)")
    return 1 if any(s["status"] == "failed" for s in bench.steps) else 0


if __name__ == "__main__":
    sys.exit(main())
