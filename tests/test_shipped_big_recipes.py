"""The shipped recipes for the models people fine-tune on GPUs (Llama-3.1-8B QLoRA, Qwen2.5-7B LoRA
bf16, SmolLM2-1.7B full bf16): each loads and keeps its Hub id, asks for what its name says, and the
model it names, built on the meta device (no weights, no memory) from its published config.json, has
the parameter count its model card gives and its header states, as does the LoRA the recipe attaches.

Tests never reach the Hub, so the configs are written out below, verbatim from each model's
config.json on the Hugging Face Hub (SmolLM2's without its `transformers.js_config` block, which
only transformers.js reads).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ftcli.io import is_local_path
from ftcli.recipe import load_recipe, parse_recipe
from ftcli.recipe.loading import read_yaml

REPO = Path(__file__).resolve().parents[1]

# https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json
LLAMA_3_1_8B = """{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
}"""

# https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json
QWEN2_5_7B = """{
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 3584,
  "initializer_range": 0.02,
  "intermediate_size": 18944,
  "max_position_embeddings": 131072,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 28,
  "num_hidden_layers": 28,
  "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_mrope": false,
  "use_sliding_window": false,
  "vocab_size": 152064
}"""

# https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B-Instruct/blob/main/config.json
SMOLLM2_1_7B_INSTRUCT = """{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 8192,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 24,
  "num_key_value_heads": 32,
  "pad_token_id": 2,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 130000,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3",
  "use_cache": true,
  "vocab_size": 49152
}"""


# recipe file -> (Hub id, its config.json, total parameters, trainable parameters with the recipe's LoRA).
# Totals: the published 8.03B, 7.62B and 1.71B. Trainable: r x (in + out) for every linear layer of every
# decoder layer (all-linear leaves out the LM head); a full fine-tune trains everything.
SHIPPED = {
    "llama-3.1-8b-qlora.yaml": ("meta-llama/Llama-3.1-8B", LLAMA_3_1_8B, 8_030_261_248, 41_943_040),
    "qwen2.5-7b-lora-bf16.yaml": ("Qwen/Qwen2.5-7B", QWEN2_5_7B, 7_615_616_512, 40_370_176),
    "smollm2-1.7b-full-bf16.yaml": ("HuggingFaceTB/SmolLM2-1.7B-Instruct", SMOLLM2_1_7B_INSTRUCT,
                                    1_711_376_384, 1_711_376_384),
}
NAMES = sorted(SHIPPED)


def recipe_path(name: str) -> Path:
    return REPO / "recipes" / name


def header(name: str) -> str:
    """The recipe's leading comment block: what a user reads before the keys."""
    lines = recipe_path(name).read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])


def meta_model(config_json: str, tmp_path: Path):
    """The model of a config.json, as transformers reads one from disk, on the meta device.

    torch's meta device, not accelerate's init_empty_weights: under transformers 5 the latter unties
    tied embeddings (SmolLM2's LM head would be counted twice: 1.81B instead of 1.71B)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(config_json, encoding="utf-8")
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert next(model.parameters()).is_meta  # nothing was allocated
    return model


def count(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def billions(n: int) -> str:
    return f"{n / 1e9:.2f}B"


def test_the_repo_wide_recipe_test_validates_these_too():
    from test_recipe import RECIPE_FILES

    assert {recipe_path(n) for n in NAMES} <= set(RECIPE_FILES)


def test_the_configs_are_json_as_published():
    for _, config_json, _, _ in SHIPPED.values():
        assert isinstance(json.loads(config_json), dict)


@pytest.mark.parametrize("name", NAMES)
def test_each_recipe_loads_and_names_its_model_by_hub_id(name, monkeypatch):
    monkeypatch.chdir(REPO)  # a user runs the shipped recipes from the repository's root
    recipe = load_recipe(recipe_path(name))
    hub_id = SHIPPED[name][0]
    # Path resolution leaves a Hub id alone: 'Llama-3.1-8B' has a dot, but no file suffix of ours.
    assert recipe.model.name_or_path == hub_id and not is_local_path(hub_id)
    assert Path(recipe.data.train).is_file()  # the repo's own data, made absolute
    assert json.loads(SHIPPED[name][1])["model_type"] in ("llama", "qwen2")  # packing and ftcli's loss are proven


def test_the_qlora_recipe_quantizes_to_4_bit_nf4_under_lora_in_bf16():
    recipe = parse_recipe(read_yaml(recipe_path("llama-3.1-8b-qlora.yaml")))
    q = recipe.model.quantization
    assert (q.bits, q.type, q.double_quant) == (4, "nf4", True)
    assert recipe.lora is not None and recipe.lora.target_modules == "all-linear"
    assert recipe.train.precision == "bf16" and recipe.train.gradient_checkpointing
    assert recipe.train.optim == "paged_adamw_8bit"


def test_the_qwen_recipe_is_lora_on_bf16_weights_without_quantization():
    recipe = parse_recipe(read_yaml(recipe_path("qwen2.5-7b-lora-bf16.yaml")))
    assert recipe.model.dtype == "bfloat16" and recipe.model.quantization is None
    assert recipe.lora is not None and recipe.train.precision == "bf16"


def test_the_smollm2_recipe_is_a_full_fine_tune_with_fp32_master_weights_and_bf16_compute():
    recipe = parse_recipe(read_yaml(recipe_path("smollm2-1.7b-full-bf16.yaml")))
    assert recipe.lora is None and recipe.model.quantization is None
    assert recipe.model.dtype == "float32" and recipe.train.precision == "bf16"


@pytest.mark.parametrize("name", NAMES)
def test_the_model_has_its_published_parameter_count(name, tmp_path):
    _, config_json, total, _ = SHIPPED[name]
    assert count(meta_model(config_json, tmp_path)) == total
    assert billions(total) in header(name)  # the header's figure is the model's


@pytest.mark.parametrize("name", NAMES)
def test_the_recipes_lora_trains_the_parameters_its_header_states(name, tmp_path):
    from ftcli.modeling.lora import attach_lora

    _, config_json, total, trainable = SHIPPED[name]
    recipe = parse_recipe(read_yaml(recipe_path(name)))
    model = meta_model(config_json, tmp_path)
    if recipe.lora is not None:
        import torch

        with torch.device("meta"):  # the adapters on the meta device too
            model = attach_lora(model, recipe.task, recipe.lora)
        assert f"{trainable / 1e6:.1f}M" in header(name)
    assert count(model, trainable_only=True) == trainable
    assert count(model) == total + (trainable if recipe.lora is not None else 0)


@pytest.mark.parametrize("name", NAMES)
def test_each_header_says_how_to_run_it_and_carries_the_plan_line(name):
    text = header(name)
    assert f"ftcli finetune recipes/{name}" in text and f"ftcli plan recipes/{name}" in text
    assert re.search(r"^# plan \(`ftcli plan`, one \d+ GB bf16 GPU\): ", text, flags=re.M), "the plan's line"


# The GPU each header plans for. The full-length figure depends on the config and the recipe alone (rows of
# data.max_length tokens, as for a stream), not on the tokenizer, so a tiny one stands in for the model's.
PLANNED_GPU_GB = {"llama-3.1-8b-qlora.yaml": 24, "qwen2.5-7b-lora-bf16.yaml": 24, "smollm2-1.7b-full-bf16.yaml": 40}


@pytest.mark.parametrize("name", NAMES)
def test_the_headers_plan_is_what_ftcli_plan_says_for_full_length_rows(name, tmp_path, monkeypatch, tiny_llama):
    import shutil

    import torch

    import ftcli
    from ftcli.training import memory_estimate
    from ftcli.training.memory_estimate import human_bytes

    gb = PLANNED_GPU_GB[name]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a bf16 GPU: the plan is arithmetic on meta
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(memory_estimate, "capacity", lambda device: (gb * 2**30, f"{gb} GB GPU memory"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_llama, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "config.json").write_text(SHIPPED[name][1])
    monkeypatch.chdir(REPO)
    recipe = load_recipe(recipe_path(name), [f"model.name_or_path={folder}", "data.streaming=true",
                                             "data.eval_fraction=0", "train.max_steps=10"])
    planned = ftcli.plan(recipe)
    assert planned.memory.device == "cuda" and planned.shape.width == recipe.data.max_length and planned.fits
    line = " ".join(l.lstrip("# ") for l in header(name).splitlines() if l.startswith(("# plan", "#   ")))
    assert f"{human_bytes(planned.memory.total)} with full 2,048-token rows" in line, line
    assert f"one {gb} GB bf16 GPU" in line
