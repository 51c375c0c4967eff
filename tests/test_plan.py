"""`ftcli plan`: parameter counts, steps and the peak-memory estimate against what runs measure, the meta
device's activations against a real pass's, Hub models planned from their config alone, what to change
when a run does not fit, and the probe's timed steps. Real models: at the end, marked slow."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import ftcli
from conftest import REPO, repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.training import activations, memory_estimate, plan_report

SMOL = REPO / "models" / "smollm2-135m-instruct"
BNB = importlib.util.find_spec("bitsandbytes") is not None
COUNTS = re.compile(r"([\d,]+) of ([\d,]+) parameters trainable")


def sft_recipe(model, data: Path, lora: bool = True, **train) -> dict:
    raw = {"task": "causal-lm", "model": {"name_or_path": str(model)},
           "data": {"train": str(data), "eval_fraction": 0.1, "max_length": 96},
           "train": {"output_dir": "runs/plan", "batch_size": 8, "logging_steps": 5, "report_to": ["none"], **train}}
    if lora:
        raw["lora"] = {"r": 4}
    return raw


def write_recipe(folder: Path, raw: dict, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def pirate(workdir) -> Path:
    return write_jsonl(workdir / "data" / "pirate.jsonl", repo_rows("pirate", 64))


# ---------------------------------------------------------------- activations on the meta device


def _real_saved_bytes(model, inputs: dict) -> int:
    """What autograd keeps in a real CPU forward pass, parameters excepted."""
    import torch

    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = model(**inputs)
    del output
    return sum(saved.values())


def _models(path: Path, task: str, lora: bool, checkpointing: bool):
    import torch
    import transformers

    from ftcli.modeling.load import TASK_MODEL_CLASSES
    from ftcli.modeling.lora import attach_lora
    from ftcli.recipe import LoraSection

    cls = getattr(transformers, TASK_MODEL_CLASSES[task])
    with torch.device("meta"):
        meta = cls.from_config(transformers.AutoConfig.from_pretrained(path))
        meta = attach_lora(meta, task, LoraSection(dropout=0.1)) if lora else meta
    real = cls.from_pretrained(path)
    real = attach_lora(real, task, LoraSection(dropout=0.1)) if lora else real
    if checkpointing:
        real.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        real.enable_input_require_grads()
    return meta, real


@pytest.mark.parametrize("task, model, lora", [("causal-lm", "tiny_llama", True), ("causal-lm", "tiny_llama", False),
                                               ("masked-lm", "tiny_bert", False), ("seq2seq", "tiny_t5", True)])
def test_meta_activations_are_what_a_real_pass_keeps(request, task, model, lora):
    """Dropout's bool masks and the fused attention's q, k, v, output and log-sum-exp (tokens-first, so a
    model's reshape of it is a view): on meta exactly the bytes a CPU pass keeps."""
    import torch

    meta, real = _models(request.getfixturevalue(model), task, lora, checkpointing=False)
    shape = {"input_ids": (4, 40)} | ({"decoder_input_ids": (4, 12)} if task == "seq2seq" else {})
    fake = {k: torch.zeros(s, dtype=torch.long, device="meta") for k, s in shape.items()}
    inputs = {k: torch.randint(3, 300, s) for k, s in shape.items()}
    if task == "causal-lm":
        fake["logits_to_keep"] = inputs["logits_to_keep"] = 1
    kept = activations.measure(meta, fake)
    assert kept.total == _real_saved_bytes(real, inputs)
    assert kept.layers == (4 if task == "seq2seq" else 2)


def test_checkpointed_activations_are_the_layers_inputs_and_what_is_outside_them(tiny_llama):
    """With gradient checkpointing a real pass keeps only the layers' inputs and what is outside the
    layers; backward then recomputes one layer at a time (the largest adds its own)."""
    import torch

    meta, real = _models(tiny_llama, "causal-lm", lora=True, checkpointing=True)
    kept = activations.measure(meta, {"input_ids": torch.zeros(4, 40, dtype=torch.long, device="meta")})
    real_kept = _real_saved_bytes(real, {"input_ids": torch.randint(3, 300, (4, 40))})
    assert kept.checkpointed() - kept.largest_layer == real_kept
    assert kept.checkpointed() < kept.total


# ---------------------------------------------------------------- the plan against the run


@pytest.mark.parametrize("lora", [True, False])
def test_plan_counts_and_steps_are_the_runs_and_the_run_records_its_peak(workdir, tiny_llama, pirate, capsys, lora):
    recipe = ftcli.load_recipe(write_recipe(workdir, sft_recipe(tiny_llama, pirate, lora=lora, epochs=2)))
    planned = ftcli.plan(recipe)
    run = ftcli.finetune(recipe)
    trainable, total = (int(n.replace(",", "")) for n in COUNTS.search(capsys.readouterr().err).groups())
    results = json.loads((run / "train_results.json").read_text())
    assert planned.parameters == {"total": total, "trainable": trainable}
    assert planned.steps == results["global_step"] == 2 * math.ceil(results["train_samples"] / 8)
    # This process's peak is the whole test session's: test_estimate_is_within_30_percent_... compares.
    assert results["peak_memory_bytes"] > 100e6 and results["planned_memory_bytes"] > 100e6


def test_a_streamed_run_is_planned_for_full_length_rows_and_its_max_steps(workdir, tiny_llama, pirate, capsys):
    raw = sft_recipe(tiny_llama, pirate, max_steps=3)
    raw["data"].update(streaming=True, eval_fraction=0)
    recipe = ftcli.load_recipe(write_recipe(workdir, raw))
    planned = ftcli.plan(recipe)
    assert (planned.steps, planned.examples, planned.tokens) == (3, None, None)  # unknown before reading
    assert planned.shape.rows * planned.shape.width >= 8 * 96 // planned.shape.passes  # 8 rows of max_length
    run = ftcli.finetune(recipe)
    planned_by_run = json.loads((run / "train_results.json").read_text())["planned_memory_bytes"]
    assert planned_by_run == pytest.approx(planned.memory.total, rel=0.05)  # the same, on a grown process
    assert "memory plan unavailable" not in capsys.readouterr().err


def test_classification_head_counts_as_the_run_builds_it(workdir, tiny_bert, capsys):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 40))
    recipe = ftcli.load_recipe(write_recipe(workdir, {
        "task": "sequence-classification", "model": {"name_or_path": str(tiny_bert)},
        "data": {"train": str(data), "text_field": "text", "label_field": "label"}, "lora": {"r": 4},
        "train": {"output_dir": "runs/cls", "max_steps": 2, "batch_size": 8, "report_to": ["none"]}}))
    planned = ftcli.plan(recipe)
    ftcli.finetune(recipe)
    trainable, total = (int(n.replace(",", "")) for n in COUNTS.search(capsys.readouterr().err).groups())
    assert planned.parameters == {"total": total, "trainable": trainable}
    assert planned.shape.label_positions == 8  # one class per row


def _fresh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "ftcli", *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's VmHWM")
def test_a_run_started_by_a_large_process_measures_its_own_peak():
    """getrusage's ru_maxrss survives exec: a run started from a 1.5 GB process would report 1.5 GB."""
    ballast = b"x" * (1536 << 20)  # written, so resident
    child = subprocess.run([sys.executable, "-c", "from ftcli.training.memory_estimate import peak_rss; print(peak_rss())"],
                           capture_output=True, text=True, check=True)
    assert memory_estimate.current_rss() > len(ballast) > 2 * int(child.stdout)
    del ballast


@pytest.mark.parametrize("kind", ["lora", "full", "qlora-4bit"])
def test_estimate_is_within_30_percent_of_a_fresh_runs_peak_rss(workdir, tiny_llama, pirate, kind):
    """Each in a process of its own: peak RSS never goes down within one. (On a tiny model the process
    itself is most of it; the SmolLM2 runs at the end are the test of the parts.)"""
    if kind.startswith("qlora") and not BNB:
        pytest.skip("bitsandbytes not installed")
    raw = sft_recipe(tiny_llama, pirate, lora=kind != "full", max_steps=3)
    if kind.startswith("qlora"):
        raw["model"]["quantization"] = {"bits": 4}
    recipe = write_recipe(workdir, raw)
    planned = json.loads(_fresh("plan", "--json", str(recipe), cwd=workdir).stdout)
    _fresh("finetune", str(recipe), cwd=workdir)
    measured = json.loads((workdir / "runs" / "plan" / "train_results.json").read_text())["peak_memory_bytes"]
    assert set(planned) == {"parameters", "tokens", "steps", "memory", "fits", "time_s"}
    assert set(planned["memory"]) == {"weights", "trainable", "gradients", "optimizer", "activations", "total"}
    assert planned["time_s"] is None and planned["fits"] is True and planned["steps"] == 3
    assert 0.7 < planned["memory"]["total"] / measured < 1.3, (planned["memory"], measured)


def test_plan_text_shows_every_part_and_both_checkpointing_settings(workdir, tiny_llama, pirate):
    recipe = write_recipe(workdir, sft_recipe(tiny_llama, pirate, gradient_checkpointing=True))
    result = CliRunner().invoke(app, ["plan", str(recipe)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for part in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "heap", "process",
                 "total"):
        assert re.search(rf"^    {part} +\d", text, re.M), part
    assert "with gradient checkpointing;" in text and "without it" in text and ": fits" in text


# ---------------------------------------------------------------- models planned from their config alone


LLAMA_31_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
               "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
               "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
               "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False, "dtype": "bfloat16",
               "bos_token_id": 128000, "eos_token_id": 128001}


@pytest.fixture
def fake_hub(monkeypatch, tmp_path, tiny_llama):
    """A Hub repo 'meta-llama/Llama-3.1-8B' that has its config and (tiny) tokenizer but no weights:
    transformers' fetches fill an empty cache from it and are recorded."""
    import huggingface_hub.constants
    import transformers.utils.hub
    from huggingface_hub.errors import EntryNotFoundError

    repo = tmp_path / "hub"
    shutil.copytree(tiny_llama, repo, ignore=shutil.ignore_patterns("*.safetensors"))
    (repo / "config.json").write_text(json.dumps(LLAMA_31_8B))
    snapshot = tmp_path / "cache" / "models--meta-llama--Llama-3.1-8B" / "snapshots" / ("0" * 40)
    asked: list[str] = []

    def download(repo_id, filename, **kwargs):
        asked.append(filename)
        if not (repo / filename).is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        snapshot.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / filename, snapshot / filename)
        (snapshot.parents[1] / "refs").mkdir(exist_ok=True)
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
        return str(snapshot / filename)

    def download_many(repo_id, allow_patterns=(), **kwargs):
        for name in allow_patterns:
            if (repo / name).is_file():
                download(repo_id, name)
            else:
                asked.append(name)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(transformers.utils.hub, "hf_hub_download", download)
    monkeypatch.setattr(transformers.utils.hub, "snapshot_download", download_many)
    return asked


def test_hub_model_is_planned_from_its_config_alone(workdir, pirate, fake_hub):
    raw = sft_recipe("meta-llama/Llama-3.1-8B", pirate)
    raw["model"]["quantization"] = {"bits": 4}
    planned = ftcli.plan(ftcli.load_recipe(write_recipe(workdir, raw)))
    assert "config.json" in fake_hub
    assert not [name for name in fake_hub if name.endswith((".safetensors", ".bin", ".pt"))]
    lora = 4 * 32 * ((4096 + 4096) * 2 + (4096 + 1024) * 2 + (4096 + 14336) * 3)  # r=4 on every linear layer
    assert planned.parameters == {"total": 8_030_261_248 + lora, "trainable": lora}
    m = planned.memory
    full = 2 * 128256 * 4096 + 65 * 4096  # embeddings, lm_head and the norms stay float32 (k-bit training)
    quantized = 8_030_261_248 - full
    assert m.weights_by_kind["float32"] == full * 4
    assert m.weights_by_kind["nf4 4-bit"] == pytest.approx(quantized * (0.5 + 1 / 64 + 4 / 64 / 256), rel=1e-4)


SMOLLM2_17B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
               "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
               "num_key_value_heads": 32, "vocab_size": 49152, "max_position_embeddings": 8192,
               "tie_word_embeddings": True, "rope_theta": 130000}


@pytest.fixture
def config_only(workdir, tiny_llama) -> Path:
    """A local model folder with SmolLM2-1.7B's config and a (tiny) tokenizer, and no weights."""
    folder = workdir / "smollm2-1.7b"
    shutil.copytree(tiny_llama, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "config.json").write_text(json.dumps(SMOLLM2_17B))
    return folder


def test_local_folder_with_only_a_config_and_a_tokenizer(workdir, pirate, config_only):
    """1,711,376,384 parameters, planned without weights; full bf16 keeps bfloat16 gradients and AdamW
    states."""
    raw = sft_recipe(config_only, pirate, lora=False, precision="bf16")
    raw["model"]["dtype"] = "bfloat16"
    planned = ftcli.plan(ftcli.load_recipe(write_recipe(workdir, raw)))
    n = 1_711_376_384
    assert planned.parameters == {"total": n, "trainable": n}
    m = planned.memory
    assert (m.weights, m.trainable, m.gradients, m.optimizer) == (2 * n, 0, 2 * n, 4 * n)


# ---------------------------------------------------------------- parts


def test_the_optimizer_table_is_transformers_list():
    from transformers.training_args import OptimizerNames

    names = {o.value for o in OptimizerNames}
    assert set(memory_estimate.OPTIMIZER_STATES) == names  # a new one shows here, to be sized
    assert {"adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_8bit", "paged_adamw_8bit"} <= \
        set(memory_estimate.OPTIMIZER_STATES)


@pytest.mark.parametrize("optim, expected", [
    (None, 2 * 4 * 64 * 128 + 2 * 4 * 8), ("adamw_torch_fused", 2 * 4 * 64 * 128 + 2 * 4 * 8),
    ("adamw_8bit", 2 * 64 * 128 * (1 + 4 / 256) + 2 * 4 * 8),  # small tensors stay 32-bit
    ("adafactor", (64 + 128) * 4 + 8 * 4),  # a row and a column statistic; a vector in full
    ("sgd", 0), ("lion_8bit", 64 * 128 * (1 + 4 / 256) + 4 * 8)])
def test_optimizer_states_per_optimizer(optim, expected):
    import torch

    params = [torch.empty(64, 128, device="meta"), torch.empty(8, device="meta")]
    assert memory_estimate.optimizer_state_bytes(params, optim) == (int(expected), True)


def test_an_optimizer_the_table_lacks_is_assumed_adamw_and_said():
    import torch

    assert memory_estimate.optimizer_state_bytes([torch.empty(10, device="meta")], "new_optimizer") == (80, False)


@pytest.mark.skipif(not BNB, reason="bitsandbytes not installed")
@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_layers_are_the_ones_bitsandbytes_quantizes(tiny_llama, bits):
    """transformers' own choice of what stays unquantized (`get_keys_to_not_convert`), read on the meta
    model, against a real bitsandbytes load on this CPU, and the bytes of the quantized weights."""
    import torch
    import transformers

    from ftcli.modeling.quantization import bnb_config
    from ftcli.recipe.quantization_section import QuantizationSection

    section = QuantizationSection(bits=bits)
    real = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, quantization_config=bnb_config(section),
                                                             device_map={"": "cpu"})
    layer = "Linear4bit" if bits == 4 else "Linear8bitLt"
    quantized = {name for name, module in real.named_modules() if type(module).__name__ == layer}
    with torch.device("meta"):
        meta = transformers.AutoModelForCausalLM.from_config(real.config)
    chosen = memory_estimate.quantized_weights(meta)
    assert {name for name, module in meta.named_modules() if id(getattr(module, "weight", None)) in chosen} == quantized
    modules = dict(meta.named_modules())
    planned = sum(memory_estimate.quantized_bytes(modules[name].weight, bits, True) for name in quantized)
    held = 0
    for name, module in real.named_modules():
        if name in quantized:
            weight = module.weight
            held += weight.numel() * weight.element_size()
            held += module.weight.quant_state.absmax.numel() if bits == 4 else module.weight.SCB.numel() * 4
    assert planned == pytest.approx(held, rel=0.02)


def test_what_to_change_when_it_does_not_fit(workdir, config_only, pirate, monkeypatch):
    """A full fine-tune of SmolLM2-1.7B on a machine with 1 MB: every lever it has left, each estimated
    as its own recipe, the most effective first."""
    monkeypatch.setattr(memory_estimate, "capacity", lambda device: (10**6, "test RAM"))
    recipe = ftcli.load_recipe(write_recipe(workdir, sft_recipe(config_only, pirate, lora=False)))
    planned = ftcli.plan(recipe)
    assert not planned.fits
    changes = [change for change, _ in planned.suggestions]
    assert {c.split(":")[0].split(" ")[0] for c in changes} >= {"lora", "model.quantization",
                                                                 "train.gradient_checkpointing", "train.batch_size"}
    totals = [total for _, total in planned.suggestions]
    assert totals == sorted(totals) and max(totals) < planned.memory.total
    text = plan_report.render(planned, "recipe.yaml")
    assert "does NOT fit" in text and "to fit, change (largest saving first):" in text


def test_probe_times_real_steps_and_keeps_nothing(workdir, tiny_llama, pirate):
    recipe = write_recipe(workdir, sft_recipe(tiny_llama, pirate, epochs=3))
    result = CliRunner().invoke(app, ["plan", "--json", "--probe", "3", str(recipe)])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)  # nothing but the JSON on stdout: Trainer's printer is off
    assert planned["steps"] > 3 and planned["time_s"] > 0
    assert not (workdir / "runs").exists()


# ---------------------------------------------------------------- real models (slow)


def _smol_recipe(folder: Path, name: str, **changes) -> Path:
    raw = yaml.safe_load((REPO / "recipes" / "demo-smollm2-lora.yaml").read_text())
    raw["model"]["name_or_path"] = str(SMOL)
    raw["data"]["train"] = str(REPO / "data" / "pirate" / "train.jsonl")
    raw["train"].update(output_dir=str(folder / name), max_steps=2, report_to=["none"])
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if value is None:
            raw.pop(section, None)
        else:
            raw.setdefault(section, {})[field] = value
    return write_recipe(folder, raw, f"{name}.yaml")


SMOL_RUNS = {"lora": {}, "full": {"lora": None}, "checkpointing": {"train.gradient_checkpointing": True},
             "qlora-4bit": {"model.quantization": {"bits": 4}}, "qlora-8bit": {"model.quantization": {"bits": 8}}}


@pytest.mark.slow
@pytest.mark.parametrize("name", SMOL_RUNS)
def test_smollm2_estimate_is_within_30_percent_of_the_measured_peak(tmp_path, name):
    if not SMOL.exists():
        pytest.skip(f"{SMOL} not found: run `make models`")
    if name.startswith("qlora") and not BNB:
        pytest.skip("bitsandbytes not installed")
    recipe = _smol_recipe(tmp_path, name, **SMOL_RUNS[name])
    planned = json.loads(_fresh("plan", "--json", str(recipe), cwd=tmp_path).stdout)
    run = _fresh("finetune", str(recipe), cwd=tmp_path)
    trainable = int(COUNTS.search(run.stderr).group(1).replace(",", ""))
    measured = json.loads((tmp_path / name / "train_results.json").read_text())["peak_memory_bytes"]
    print(f"{name}: planned {planned['memory']['total'] / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB "
          f"({100 * (planned['memory']['total'] / measured - 1):+.0f}%)")
    assert planned["parameters"]["trainable"] == trainable
    assert 0.7 < planned["memory"]["total"] / measured < 1.3, (planned["memory"], measured)
