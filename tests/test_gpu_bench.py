"""bench/gpu.sh's CPU-side parts (no GPU here): the script parses, its report on a machine without CUDA
says what it could not run and why, the kit it prepares can travel, and its checks can fail: the
packing check tells packed rows from cross-attending ones, the load check refuses an untrained or
incomplete model, and a part that fails or finds no time is reported while the others run on.
The whole harness on a tiny model (`bash bench/gpu.sh --cpu`) is the slow test at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import gpu  # noqa: E402  (bench/ modules import each other by name, as `python bench/gpu.py` runs them)
import gpu_parts  # noqa: E402
import gpu_sharded  # noqa: E402


def gpu_sh(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    return subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def test_the_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")], capture_output=True).returncode == 0


def test_without_cuda_it_reports_every_part_it_could_not_run_and_why(tmp_path):
    done = gpu_sh("--out", str(tmp_path / "gpu.json"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["probe"]["status"] == "ok" and summary["machine"]["cuda"] is False
    assert list(steps) == ["probe", *gpu_sharded.PARTS_AFTER_PROBE]
    for name in gpu_sharded.PARTS_AFTER_PROBE:
        assert steps[name]["status"] == "not run" and "no CUDA GPU" in steps[name]["why"], name
    assert "not run" in done.stdout and "summary:" in done.stdout  # the table, for a human


def test_the_prepared_kit_travels_without_weights(tmp_path):
    import common

    if not (common.SMOL / "config.json").is_file():
        pytest.skip("the example model is not here (make models)")
    kit = tmp_path / "kit"
    assert gpu_sharded.prepare(kit, kit / "smollm2") == 0
    files = [f for f in kit.rglob("*") if f.is_file()]
    assert {"config.json", "tokenizer.json"} <= {f.name for f in files}
    assert not [f for f in files if f.suffix in (".safetensors", ".bin", ".gguf")]
    assert sum(f.stat().st_size for f in files) < 32 * 2**20  # a device call carries 64 MiB in all


def test_a_model_without_weights_gets_seeded_random_ones_of_its_own_shape(tiny_llama, tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    for f in tiny_llama.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, kit / f.name)
    made = gpu_parts.materialize(str(kit), str(tmp_path / "out"))
    gpu_parts.materialize(str(kit), str(tmp_path / "again"))
    assert made["weights"].startswith("random") and made["parameters"] == gpu_parts._count(tiny_llama)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (tmp_path / "again" / "model.safetensors").read_bytes()
    assert gpu_parts.materialize(str(tiny_llama), "unused")["weights"] == "pretrained"  # weights there: used as they are


def test_the_packing_check_passes_packed_rows_and_fails_cross_attending_ones(tiny_llama, monkeypatch):
    result = gpu_parts.packing_check(str(tiny_llama), "sdpa", "cpu", "float32", sharpen=True)
    assert result["ok"] and result["error_over_control"] < 1e-3 and result["loss_rel_diff"] < 1e-5
    assert result["ftcli_accepts_packing"] is True

    import torch

    from ftcli.data import collators

    class Unpacked(collators.PackingCollator):  # positions running on: examples see each other
        def __call__(self, examples):
            batch = super().__call__(examples)
            return {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1]).unsqueeze(0)}

    monkeypatch.setattr(collators, "PackingCollator", Unpacked)
    broken = gpu_parts.packing_check(str(tiny_llama), "sdpa", "cpu", "float32", sharpen=True)
    assert not broken["ok"] and broken["error_over_control"] > 0.5


def test_the_load_check_wants_every_key_finite_and_changed_by_training(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    assert not gpu_parts.load_check(str(tiny_llama), str(tiny_llama))["ok"]  # nothing trained

    trained = tmp_path / "trained"
    shutil.copytree(tiny_llama, trained)
    weights = load_file(trained / "model.safetensors")
    weights = {k: v + 0.01 if v.dim() == 2 else v for k, v in weights.items()}
    save_file(weights, trained / "model.safetensors", metadata={"format": "pt"})
    good = gpu_parts.load_check(str(trained), str(tiny_llama))
    assert good["ok"] and good["tensors_changed"] > 0 and not good["missing_keys"]

    dropped = next(k for k in weights if "layers.1.mlp" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, trained / "model.safetensors", metadata={"format": "pt"})
    incomplete = gpu_parts.load_check(str(trained), str(tiny_llama))
    assert not incomplete["ok"] and dropped in incomplete["missing_keys"]
    assert torch.isfinite(torch.tensor(incomplete["loss"]))


def test_a_failed_part_is_reported_and_the_others_run_on_until_the_budget_is_spent(tmp_path):
    bench = gpu.Bench(budget=600, log_dir=tmp_path)

    def boom(timeout):
        raise RuntimeError("exit 1; end of log:\nCUDA out of memory")

    assert bench.run("a", boom, 60) is None
    assert bench.run("b", lambda timeout: {"ok": False, "why": "x"}, 60) == {"ok": False, "why": "x"}
    assert bench.run("c", lambda timeout: {"value": timeout}, 60)["value"] <= 60  # capped, within the budget
    assert bench.run("d", lambda timeout: {}, 60, why_not="deepspeed not installed") is None
    bench.deadline = 0  # the budget is spent
    assert bench.run("e", lambda timeout: {}, 60) is None
    got = {s["step"]: (s["status"], s["why"]) for s in bench.steps}
    assert got["a"] == ("failed", "exit 1; end of log:\nCUDA out of memory")
    assert got["b"][0] == "failed" and got["c"] == ("ok", "")
    assert got["d"] == ("not run", "deepspeed not installed") and got["e"][0] == "not run" and "budget" in got["e"][1]


@pytest.mark.parametrize("name", sorted(gpu_sharded.RECIPES))
@pytest.mark.parametrize("on_gpu", [True, False])
def test_the_sharded_parts_run_the_shipped_recipes_shortened_and_still_valid(name, on_gpu, tiny_llama, tmp_path):
    from ftcli.recipe import load_recipe

    recipe = load_recipe(gpu_sharded.recipe_for(name, str(tiny_llama), tmp_path, gpu=on_gpu))
    assert recipe.model.name_or_path == str(tiny_llama) and recipe.train.max_steps == gpu_sharded.STEPS
    assert recipe.train.output_dir == str(tmp_path / name)
    shipped = load_recipe(REPO / gpu_sharded.RECIPES[name])
    if on_gpu:
        assert recipe.train.precision == "bf16" and recipe.distributed == shipped.distributed
    else:  # FSDP and DeepSpeed are refused on CPU: the stand-in runs the rest of the recipe
        assert recipe.distributed is None
    assert (recipe.lora is None) == (shipped.lora is None)


def test_sft_metrics_give_tokens_per_second_and_mfu_against_the_measured_rate():
    result = gpu.sft_metrics({"tokens": 1000, "train_s": 2.0, "row_lengths": [10, 20]},
                             {"a": 100.0, "b": 1.0}, {"flops_per_s": 1e4})
    assert result["tokens_per_s"] == 500 and result["mfu"] == pytest.approx((1000 + 100 + 2000 + 400) / 2.0 / 1e4)
    assert "row_lengths" not in result


@pytest.mark.slow
def test_the_whole_harness_runs_on_a_tiny_model_on_cpu(tmp_path):
    done = gpu_sh("--cpu", "--out", str(tmp_path / "gpu.json"), timeout=2400)
    summary = json.loads((tmp_path / "gpu.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert done.returncode == 0, [s for s in summary["steps"] if s["status"] == "failed"]
    optional = {"sft-trl": "trl", "packing-flash": None}
    for name, step in steps.items():
        if name in optional:
            assert step["status"] in ("ok", "not run"), step
        else:
            assert step["status"] == "ok", step
    assert steps["sft-ftcli"]["result"]["tokens"] > 0 and steps["qlora"]["result"]["tokens"] > 0
    assert all(steps[n]["result"]["ok"] for n in gpu_sharded.RECIPES)
