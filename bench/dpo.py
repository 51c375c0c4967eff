"""dpo: SmolLM2-135M-Instruct LoRA preference tuning (DPO) on HH-RLHF pairs — TRL's DPOTrainer vs ftcli.

Both train the same pairs (the first N of hh-rlhf/train.jsonl, TRL's conversational preference form)
with the same LoRA, max_length, batch, steps, learning rate, linear schedule, beta and seed, in fp32.
N = batch × steps: one epoch, so both see every pair once, in their own order. Throughput counts the
non-padding tokens (chosen and rejected sequences both) of the batches each trainer actually stepped
on (`common.instrument`) over the Trainer's train_runtime.

The reference differs in *when* it is paid: TRL's default (precompute_ref_log_probs=False) runs a
reference forward inside every training step; ftcli's default (preference.precompute_reference: true)
scores every pair once before training, outside train_runtime. So each contender also reports its
reference pass (`ref_s`, timed around TRL's `_precompute_ref_logps`) and the whole library call
(`run_s`: loading, tokenizing, the reference pass, training and saving), and the targets table has
tokens/s over train_runtime and over train_runtime + ref_s.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import common
import sft

LR, BETA, LORA = 2e-4, 0.1, sft.LORA  # the sft workload's learning rate and LoRA (ftcli's defaults there)
# Mean |ftcli step loss - TRL step loss| / mean TRL step loss. The two draw the pairs in different orders
# (ftcli: seeded length grouping; TRL: random), so per-step losses differ by the batches' own spread.
CURVE_TOLERANCE = 0.10


def sizes(quick: bool) -> dict:
    return ({"pairs": 8, "batch": 4, "steps": 2, "max_length": 128} if quick
            else {"pairs": 40, "batch": 4, "steps": 10, "max_length": 256})


def write_data(work: Path, n: int) -> str:
    """The first `n` pairs, as they are (prompt/chosen/rejected lists of turns)."""
    path = work / f"hh-rlhf-{n}.jsonl"
    with open(common.DATA / "hh-rlhf" / "train.jsonl", encoding="utf-8") as src, open(path, "w", encoding="utf-8") as f:
        for _, line in zip(range(n), src):
            row = json.loads(line)
            f.write(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}) + "\n")
    return str(path)


def recipe(data: str, out: str, steps: int, max_length: int, batch: int) -> dict:
    """ftcli's recipe: only what the workload fixes; everything else is ftcli's default (the reference
    pass before training, length grouping, checkpointing, logging). eval_fraction 0: every pair trains,
    as in TRL's run."""
    return {"task": "causal-lm", "model": {"name_or_path": str(common.SMOL)},
            "data": {"train": data, "max_length": max_length, "eval_fraction": 0}, "lora": LORA,
            "preference": {"method": "dpo", "beta": BETA},
            "train": {"output_dir": out, "batch_size": batch, "max_steps": steps, "learning_rate": LR,
                      "seed": common.SEED}}


# --- the contenders (each in its own process) -----------------------------------------------------

def _time_reference(trainer_cls) -> dict:
    """Seconds spent in TRL's reference pass before training (`_precompute_ref_logps`, which ftcli's
    trainer inherits), 0 when the trainer scores the reference inside its steps instead."""
    timing = {"ref_s": 0.0}
    original = trainer_cls._precompute_ref_logps

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            timing["ref_s"] += time.perf_counter() - t0

    trainer_cls._precompute_ref_logps = timed
    return timing


def _result(seen: dict, timing: dict, run_s: float, metrics: dict) -> dict:
    return {"train_s": metrics["train_runtime"], "ref_s": round(timing["ref_s"], 2), "run_s": round(run_s, 2),
            "tokens": seen["tokens"], "loss_tokens": seen["loss_tokens"], "padded_tokens": seen["padded_tokens"],
            "steps": seen["steps"], "sequences": len(seen["row_lengths"]), "train_loss": metrics["train_loss"],
            "step_losses": [round(float(x), 5) for x in seen["step_losses"]],
            "logged_losses": [e["loss"] for e in seen["logs"] if "loss" in e]}


def trl_run(data: str, out: str, steps: int, max_length: int, batch: int) -> dict:
    """TRL's DPOTrainer as its docs use it: the rows as given, a LoraConfig, TRL's defaults otherwise
    (its reference forward in every step, dropout disabled) except gradient checkpointing, off as for
    ftcli (see README)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    seen = common.instrument(DPOTrainer)
    timing = _time_reference(DPOTrainer)
    rows = [json.loads(line) for line in open(data, encoding="utf-8")]
    config = DPOConfig(output_dir=out, max_length=max_length, per_device_train_batch_size=batch, max_steps=steps,
                       learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, beta=BETA, seed=common.SEED,
                       data_seed=common.SEED, bf16=False, use_cpu=not torch.cuda.is_available(), report_to="none",
                       # TRL defaults to checkpointing activations; ftcli does not: same compute for both.
                       gradient_checkpointing=False)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    t0 = time.perf_counter()
    trainer = DPOTrainer(model=str(common.SMOL), args=config, train_dataset=Dataset.from_list(rows), peft_config=lora)
    metrics = trainer.train().metrics
    trainer.save_model(out)  # as a user's script would; ftcli saves its model too
    return _result(seen, timing, time.perf_counter() - t0, metrics)


def ftcli_run(data: str, out: str, steps: int, max_length: int, batch: int) -> dict:
    import ftcli
    from ftcli.recipe import parse_recipe
    from ftcli.training import preference

    # ftcli's DPO trainer is a subclass of FtcliTrainer and TRL's DPOTrainer, built per call. Instrument
    # that class itself, not FtcliTrainer: its training_step is FtcliTrainer's (one call per optimizer
    # step), but wrapping FtcliTrainer.log would call Trainer.log past DPOTrainer.log, dropping TRL's
    # reward metrics from the logs and changing what the run does. finetune looks the builder up on the
    # module at call time, so it gets this class.
    trainer_cls = preference.trainer_class("dpo")  # one class, instrumented, handed to finetune
    preference.trainer_class = lambda method: trainer_cls
    seen = common.instrument(trainer_cls)
    timing = _time_reference(trainer_cls)
    t0 = time.perf_counter()
    run_dir = ftcli.finetune(parse_recipe(recipe(data, out, steps, max_length, batch)))
    run_s = time.perf_counter() - t0
    metrics = json.loads((run_dir / "train_results.json").read_text())
    return _result(seen, timing, run_s, metrics)


# --- the workload (in the bench process) ----------------------------------------------------------

def _curve_gap(ours: list[float], theirs: list[float]) -> float:
    n = min(len(ours), len(theirs))
    if not n:
        return float("nan")
    return sum(abs(a - b) for a, b in zip(ours[:n], theirs[:n])) / n / (sum(theirs[:n]) / n)


def run(work: Path, quick: bool, **_) -> dict:
    size = sizes(quick)
    data = write_data(work, size["pairs"])
    results = {}
    for name, role in (("trl", "trl"), ("ftcli", "ftcli")):
        env = {"FTCLI_CACHE_DIR": str(work / f"cache-dpo-{name}")}
        results[name] = common.worker("dpo.py", role, {"data": data, "out": str(work / f"dpo-{name}"),
                                                       "steps": size["steps"], "max_length": size["max_length"],
                                                       "batch": size["batch"]}, env)
    for r in results.values():
        r["tokens_per_s"] = r["tokens"] / r["train_s"]
        r["tokens_per_s_with_ref"] = r["tokens"] / (r["train_s"] + r["ref_s"])
        if not r["tokens"] or r["steps"] != size["steps"]:
            raise RuntimeError(f"dpo: a contender stepped {r['steps']} times on {r['tokens']} tokens "
                               f"(expected {size['steps']} steps): the instrumentation missed its batches")

    trl, ours = results["trl"], results["ftcli"]
    rows = [{"workload": "dpo", "contender": name, "speed": f"{r['tokens_per_s']:.0f} tokens/s",
             "quality": f"mean step loss {r['train_loss']:.4f} (step 1 {r['step_losses'][0]:.4f})",
             "time": f"train {r['train_s']:.1f}s + ref {r['ref_s']:.1f}s; run {r['run_s']:.1f}s",
             "peak RSS": f"{r['peak_rss_mb']:.0f} MB",
             "vs baseline": f"{r['tokens_per_s'] / trl['tokens_per_s']:.2f}× TRL "
                            f"({r['tokens_per_s_with_ref'] / trl['tokens_per_s_with_ref']:.2f}× with ref pass)",
             "other": f"{r['tokens_per_s_with_ref']:.0f} tokens/s with ref pass; {r['tokens']} tokens "
                      f"({r['loss_tokens']} in loss) in {r['padded_tokens']} padded, {r['sequences']} sequences; "
                      f"step losses {' '.join(f'{x:.3f}' for x in r['step_losses'])}"}
            for name, r in results.items()]
    curve_gap = _curve_gap(ours["step_losses"], trl["step_losses"])
    first = max(abs(r["step_losses"][0] - math.log(2)) for r in results.values())
    checks = [common.check("dpo", "ftcli DPO non-padding tokens/s vs TRL", ours["tokens_per_s"] / trl["tokens_per_s"],
                           1.5),
              common.check("dpo", "the same, ftcli's reference pass counted in its time",
                           ours["tokens_per_s_with_ref"] / trl["tokens_per_s_with_ref"], 1.5),
              common.check("dpo", "same loss curve: mean |step loss gap| / TRL's mean", 100 * curve_gap,
                           100 * CURVE_TOLERANCE, higher_is_better=False, unit="%", ratio=False),
              common.check("dpo", "step-1 loss = ln 2 (both; largest |gap|)", first, 0.001, higher_is_better=False,
                           unit="", ratio=False)]
    return {"rows": rows, "checks": checks, "results": results, "sizes": size, "curve_gap": curve_gap}


if __name__ == "__main__":
    common.worker_main({"trl": trl_run, "ftcli": ftcli_run})
