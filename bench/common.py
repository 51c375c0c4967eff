"""Shared pieces of the benchmark: workers in fresh interpreters, timing, peak memory, the machine's
matmul rate, versions, and the printed tables.

Every trainer runs in its own `python bench/<workload>.py ROLE ARGS_JSON` process, so no contender
inherits another's memory, threads or warm caches; the worker prints one `BENCH_RESULT {json}` line.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The public data beside the checkout; FTCLI_BENCH_DATA points elsewhere (bench/gpu.sh: a machine that
# received only the repository, with the data it needs carried inside it).
DATA = Path(os.environ.get("FTCLI_BENCH_DATA") or ROOT / ".." / "shared" / "data").resolve()
MODELS = ROOT / "models"
SMOL = MODELS / "smollm2-135m-instruct"
MINILM = MODELS / "all-minilm-l6-v2"
SEED = 42
MARK = "BENCH_RESULT "


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- workers --------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(script: str, role: str, args: dict, env: dict | None = None, log_dir: Path | None = None,
           timeout: float | None = None) -> dict:
    """Run `role` of bench/`script` in a fresh interpreter and return its result. Its stderr (library
    logs, progress bars) goes to a log file, so the bench's own output stays readable. Past `timeout`
    seconds the worker is killed and this raises, as for a failed worker."""
    log(f"{Path(script).stem}: {role} ...")
    log_dir = log_dir or ROOT / "bench" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{Path(script).stem}-{role}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as err:
        try:
            done = subprocess.run([sys.executable, str(ROOT / "bench" / script), role, json.dumps(args)],
                                  stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT,
                                  env={**os.environ, **(env or {})}, timeout=timeout)
        except subprocess.TimeoutExpired:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(f"{script} {role} timed out after {timeout:.0f}s; end of {log_path}:\n{tail}") from None
    results = [line[len(MARK):] for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not results:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{script} {role} failed (exit {done.returncode}); end of {log_path}:\n{tail}")
    result = json.loads(results[-1])
    result["process_wall_s"] = round(time.perf_counter() - t0, 2)
    result["load_average_after"] = os.getloadavg()[0]  # noise indicator: above the core count, CPUs were shared
    return result


def worker_main(roles: dict) -> None:
    """Entry point of a worker script: run the role named on the command line, print its result."""
    role, args = sys.argv[1], json.loads(sys.argv[2])
    result = roles[role](**args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)  # at the very end: the whole process's peak
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)  # the GPU's own peak
    print(MARK + json.dumps(result), flush=True)


def instrument(trainer_cls) -> dict:
    """Record what a Trainer class actually trains on and logs: each step's non-padding tokens
    (attention_mask), loss tokens (labels != -100; a preference batch, which has no labels: its
    completion_mask), padded tokens, each row's length (for FLOPs) and the loss each step returned.
    Wrapping training_step sees exactly the batches optimised, none that a loader fetched ahead."""
    seen = {"tokens": 0, "loss_tokens": 0, "padded_tokens": 0, "steps": 0, "row_lengths": [], "logs": [],
            "step_losses": []}
    step, log_fn = trainer_cls.training_step, trainer_cls.log

    def training_step(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        if mask is None:  # a packed row: no padding; examples start where position_ids restart at 0
            starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist() + [inputs["input_ids"].shape[1]]
            lengths = [b - a for a, b in zip(starts, starts[1:])]
        else:
            lengths = mask.sum(dim=1).tolist()
        seen["tokens"] += sum(lengths)
        seen["padded_tokens"] += inputs["input_ids"].numel()
        labels = inputs.get("labels")
        seen["loss_tokens"] += int((labels != -100).sum() if labels is not None else inputs["completion_mask"].sum())
        seen["row_lengths"] += lengths
        seen["steps"] += 1
        loss = step(self, model, inputs, *args, **kwargs)
        seen["step_losses"].append(loss.detach())  # a tensor: no device sync per step; float() it after
        return loss

    def log(self, logs, *args, **kwargs):
        seen["logs"].append(dict(logs))
        return log_fn(self, logs, *args, **kwargs)

    trainer_cls.training_step, trainer_cls.log = training_step, log
    return seen


def last_logged(logs: list[dict], key: str):
    values = [entry[key] for entry in logs if key in entry]
    return values[-1] if values else None


# --- measurements ---------------------------------------------------------------------------------

def matmul_peak(seconds: float = 3.0, n: int = 2048) -> dict:
    """The machine's fp32 matmul rate with torch's default threads: the best of three windows of
    `seconds`/3 each (other load on a shared machine only ever lowers a window)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    rates = []
    for _ in range(3):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            torch.mm(a, b)
            count += 1
        rates.append(2 * n ** 3 * count / (time.perf_counter() - t0))
    return {"flops_per_s": max(rates), "windows": rates, "n": n, "threads": torch.get_num_threads()}


def median_wall(command: list[str], runs: int) -> dict:
    """Median and spread of a command's wall time over `runs` runs, after one untimed warm-up."""
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": runs}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict:
    """Versions of everything measured (read from package metadata: nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "ftcli"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found.update(cpu=_cpu_model(), cores=os.cpu_count(), threads=torch_threads())
    return found


def torch_threads() -> int:
    # Asked of a fresh interpreter: what every worker gets by default.
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


# --- output ---------------------------------------------------------------------------------------

def check(workload: str, what: str, value: float, target: float, higher_is_better: bool = True,
          unit: str = "×", ratio: bool = True) -> dict:
    """One line of the targets table: a measured value beside its target, passed or not."""
    ok = value >= target if higher_is_better else value <= target
    shown = f"{value:.2f}{unit}" if ratio else f"{value:.3g}{unit}"
    return {"workload": workload, "check": what, "measured": shown,
            "target": f"{'≥' if higher_is_better else '≤'} {target:g}{unit}", "ok": "PASS" if ok else "FAIL",
            "value": value, "target_value": target}


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns]  # rows may be empty
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)
