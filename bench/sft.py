"""sft: SmolLM2-135M-Instruct LoRA on Alpaca chats — TRL's SFTTrainer vs ftcli.

Both train the same rows (the first N of alpaca_5000.json as user/assistant chats) with the same LoRA,
max_length, batch, steps, learning rate, linear schedule and seed, in fp32, with loss on the assistant
reply only. Throughput counts the non-padding tokens of the batches each trainer actually stepped on
(`common.instrument`) over the Trainer's train_runtime.

MFU: the FLOPs of a LoRA training step (forward + backward, frozen base weights) are counted with
torch's FlopCounterMode at two sequence lengths and fitted as a·T + b·T² (linear layers and attention),
then summed over every trained row's real length; padding is not useful work, so it is not counted.
Achieved FLOP/s = that sum / train time; MFU = achieved / this machine's fp32 matmul rate, measured in
the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

import common

BATCH, LR, LORA = 8, 2e-4, {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}


def sizes(quick: bool) -> dict:
    return ({"rows": 16, "steps": 2, "max_length": 256, "heldout": 8} if quick
            else {"rows": 240, "steps": 30, "max_length": 256, "heldout": 64})


def chats(n: int) -> list[list[dict]]:
    rows = json.loads((common.DATA / "alpaca" / "alpaca_5000.json").read_text(encoding="utf-8"))[:n]
    return [[{"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")},
             {"role": "assistant", "content": r["output"]}] for r in rows]


def write_data(work: Path, n: int) -> str:
    path = work / "alpaca-chats.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for messages in chats(n):
            f.write(json.dumps({"messages": messages}) + "\n")
    return str(path)


def recipe(data: str, out: str, steps: int, max_length: int, overrides: dict | None = None) -> dict:
    """ftcli's recipe: only what the workload fixes; everything else is ftcli's default (unless
    `overrides`, {"train.micro_batch_tokens": None, ...}, changes it: bench/levers.py; bench/gpu.py
    sets model.name_or_path, model.dtype, train.precision and model.quantization)."""
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(common.SMOL)},
              "data": {"train": data, "max_length": max_length, "eval_fraction": 0}, "lora": LORA,
              "train": {"output_dir": out, "batch_size": BATCH, "max_steps": steps, "learning_rate": LR}}
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".")
        recipe[section][key] = value
    return recipe


# --- the contenders (each in its own process) -----------------------------------------------------

def heldout_loss(model, tokenizer, rows: int, heldout: int, max_length: int) -> float:
    """Cross-entropy of the assistant replies (prompt masked, token-weighted) of the `heldout` chats that
    follow the training rows: the same function scores every contender's trained model. (The last logged
    training loss depends on which rows the last steps drew, so it only compares runs in the same order.)"""
    import torch

    if not heldout:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for messages in chats(rows + heldout)[rows:]:
            prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(messages, tokenize=False)
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
            labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
            n = sum(label != -100 for label in labels[1:])
            if n:
                loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels[:len(ids)]])).loss
                total, count = total + loss.item() * n, count + n
    return total / count


def _result(seen: dict, train_s: float, train_loss: float, heldout: float) -> dict:
    return {"heldout_loss": heldout, "train_s": train_s, "tokens": seen["tokens"], "loss_tokens": seen["loss_tokens"],
            "padded_tokens": seen["padded_tokens"], "steps": seen["steps"], "rows": len(seen["row_lengths"]),
            "final_loss": common.last_logged(seen["logs"], "loss") or train_loss, "train_loss": train_loss,
            "row_lengths": seen["row_lengths"], "logged_losses": [e["loss"] for e in seen["logs"] if "loss" in e]}


def trl_run(data: str, out: str, steps: int, max_length: int, rows_trained: int = 0, heldout_rows: int = 0,
            model: str | None = None, bf16: bool = False) -> dict:
    """TRL's SFTTrainer as its docs use it. SmolLM2's chat template has no {% generation %} markers and
    TRL cannot patch it (assistant_only_loss raises), so the chats go in TRL's conversational
    prompt/completion form, whose default completion-only loss masks exactly the user turn.
    `bf16` (bench/gpu.py): the model loaded in bfloat16 and trained under bf16 autocast, as ftcli's
    model.dtype: bfloat16 with train.precision: bf16 does."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    seen = common.instrument(SFTTrainer)
    rows = [{"prompt": m[:1], "completion": m[1:]}
            for m in (json.loads(line)["messages"] for line in open(data, encoding="utf-8"))]
    import torch

    config = SFTConfig(output_dir=out, max_length=max_length, per_device_train_batch_size=BATCH, max_steps=steps,
                       learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, seed=common.SEED,
                       data_seed=common.SEED, bf16=bf16, report_to="none",
                       # bench/gpu.sh --cpu checks the harness with bf16 too: transformers refuses bf16 on a
                       # CPU-only machine unless it is told the CPU is meant (ftcli's runs do the same).
                       use_cpu=not torch.cuda.is_available(),
                       # TRL defaults to checkpointing activations; ftcli does not: same compute for both.
                       gradient_checkpointing=False)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    path = model or str(common.SMOL)
    if bf16:  # a loaded model: SFTTrainer would otherwise load the checkpoint in its own dtype
        from transformers import AutoModelForCausalLM

        path = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    trainer = SFTTrainer(model=path, args=config, train_dataset=Dataset.from_list(rows), peft_config=lora)
    metrics = trainer.train().metrics
    trainer.save_model(out)  # as a user's script would; ftcli saves its model too
    heldout = heldout_loss(trainer.model, trainer.processing_class, rows_trained, heldout_rows, max_length)
    return _result(seen, metrics["train_runtime"], metrics["train_loss"], heldout)


def ftcli_run(data: str, out: str, steps: int, max_length: int, rows_trained: int = 0, heldout_rows: int = 0,
              overrides: dict | None = None) -> dict:
    import ftcli
    from ftcli.training.trainer import FtcliTrainer
    from ftcli.recipe import parse_recipe

    seen = common.instrument(FtcliTrainer)
    run_dir = ftcli.finetune(parse_recipe(recipe(data, out, steps, max_length, overrides)))
    metrics = json.loads((run_dir / "train_results.json").read_text())
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = run_dir / "model"  # the adapter merged in: what `ftcli eval` and users load
    heldout = heldout_loss(AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir),
                           rows_trained, heldout_rows, max_length)
    return _result(seen, metrics["train_runtime"], metrics["train_loss"], heldout)


def flops(lengths: tuple[int, int] = (64, 256), model: str | None = None) -> dict:
    """Coefficients of FLOPs(T) = a·T + b·T² for one row of T tokens, forward + backward, LoRA."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    # Eager attention: FlopCounterMode has no formula for the CPU SDPA kernel; the math is the same.
    model = AutoModelForCausalLM.from_pretrained(model or common.SMOL, attn_implementation="eager", dtype="float32")
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM"))
    model.train()
    counted = []
    for t in lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, t))
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids, labels=ids).loss.backward()
        counted.append(counter.get_total_flops())
    (t1, t2), (f1, f2) = lengths, counted
    b = (f2 / t2 - f1 / t1) / (t2 - t1)
    # The LM head's share per position: forward and input gradient (its weight is frozen), 2·d·V each.
    head = 4 * model.config.hidden_size * model.config.vocab_size
    return {"a": f1 / t1 - b * t1, "b": b, "lengths": list(lengths), "counted": counted, "head_per_token": head}


def peak() -> dict:
    return common.matmul_peak()


# --- the workload (in the bench process) ----------------------------------------------------------

def run(work: Path, quick: bool, **_) -> dict:
    size = sizes(quick)
    data = write_data(work, size["rows"])
    machine = common.worker("sft.py", "peak", {})
    count = common.worker("sft.py", "flops", {})
    results = {}
    for name, role in (("trl", "trl"), ("ftcli", "ftcli")):
        env = {"FTCLI_CACHE_DIR": str(work / f"cache-sft-{name}")}
        results[name] = common.worker("sft.py", role, {"data": data, "out": str(work / f"sft-{name}"),
                                                       "steps": size["steps"], "max_length": size["max_length"],
                                                       "rows_trained": size["rows"], "heldout_rows": size["heldout"]},
                                      env)
    for name, r in results.items():
        r["tokens_per_s"] = r["tokens"] / r["train_s"]
        r["useful_flops"] = sum(count["a"] * n + count["b"] * n * n for n in r.pop("row_lengths"))
        r["achieved_flops_per_s"] = r["useful_flops"] / r["train_s"]
        r["mfu"] = r["achieved_flops_per_s"] / machine["flops_per_s"]
        # MFU counts the model's FLOPs per token (the usual definition); ftcli skips the LM head where no
        # label counts, so it also gets the share of the machine it actually kept busy.
        skipped = count["head_per_token"] * (r["tokens"] - r["loss_tokens"]) if name == "ftcli" else 0
        r["executed_mfu"] = (r["useful_flops"] - skipped) / r["train_s"] / machine["flops_per_s"]

    trl, ours = results["trl"], results["ftcli"]
    rows = [{"workload": "sft", "contender": name, "speed": f"{r['tokens_per_s']:.0f} tokens/s",
             "quality": f"held-out loss {r['heldout_loss']:.4f} (last logged {r['final_loss']:.4f})",
             "time": f"train {r['train_s']:.1f}s", "peak RSS": f"{r['peak_rss_mb']:.0f} MB",
             "other": f"MFU {100 * r['mfu']:.1f}% ({r['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s), "
                      f"{100 * r['executed_mfu']:.1f}% of FLOPs executed; "
                      f"{r['tokens']} tokens ({r['loss_tokens']} in loss) in {r['padded_tokens']} padded",
             "vs baseline": f"{r['tokens_per_s'] / trl['tokens_per_s']:.2f}× TRL"}
            for name, r in results.items()]
    rows.append({"workload": "sft", "contender": "machine", "speed": "",
                 "other": f"fp32 matmul peak {machine['flops_per_s'] / 1e9:.1f} GFLOP/s "
                          f"({machine['n']}² torch.mm, {machine['threads']} threads)"})
    loss_gap = abs(ours["heldout_loss"] - trl["heldout_loss"]) / trl["heldout_loss"]
    checks = [common.check("sft", "ftcli non-padding tokens/s vs TRL", ours["tokens_per_s"] / trl["tokens_per_s"], 1.3),
              common.check("sft", "ftcli held-out loss vs TRL's (relative gap)", 100 * loss_gap, 2.0,
                           higher_is_better=False, unit="%", ratio=False),
              common.check("sft", "ftcli peak RSS", ours["peak_rss_mb"] / 1024, 3.0, higher_is_better=False,
                           unit=" GB", ratio=False),
              common.check("sft", "ftcli MFU", 100 * ours["mfu"], 40.0, unit="%", ratio=False)]
    return {"rows": rows, "checks": checks, "results": results, "machine": machine, "flop_count": count}


if __name__ == "__main__":
    common.worker_main({"trl": trl_run, "ftcli": ftcli_run, "flops": flops, "peak": peak})
