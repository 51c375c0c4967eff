"""QLoRA (`model.quantization`): the recipe's checks, a 4-bit and an 8-bit run on a tiny Llama (bitsandbytes
runs both on CPU), what such a run saves (model/ is the adapter merged into the full-precision base), what
`ftcli eval` and `generate --base` compare against (the quantized base, as trained), and the errors.

The slow test at the end is the proof on SmolLM2-135M: QLoRA learns the demo's pirate style with a lower
peak RSS than the fp32 LoRA run (numbers printed with `-s`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import ftcli
from conftest import REPO, recipe_problems, repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.errors import UserError
from ftcli.recipe import ModelSection, parse_recipe

needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="bitsandbytes is not installed (pip install 'ftcli[quant]')")
IDS = [[5, 17, 42, 99, 7, 3, 200, 11]]


def raw(**model) -> dict:
    return {"task": "causal-lm", "model": {"name_or_path": "models/x", **model},
            "data": {"train": "data/train.jsonl"}, "lora": {"r": 4}}


problems = recipe_problems


# --- the recipe -----------------------------------------------------------------------------------

def test_a_saved_recipe_reloads_and_says_what_ran():
    """recipe.yaml of a run holds every key: an 8-bit run's must not hold 4-bit settings it would refuse."""
    for recipe in (raw(quantization={}), raw(quantization={"bits": 8})):
        again = parse_recipe(parse_recipe(recipe).model_dump())
        assert again.model.quantization == parse_recipe(recipe).model.quantization
    four = parse_recipe(raw(quantization={})).model.quantization
    assert (four.bits, four.type, four.double_quant, four.compute_dtype) == (4, "nf4", True, "auto")
    eight = parse_recipe(raw(quantization={"bits": 8})).model.quantization
    assert (eight.type, eight.double_quant, eight.compute_dtype) == (None, None, None)


@pytest.mark.parametrize("recipe, expected", [
    ({**raw(quantization={}), "lora": None}, "model.quantization trains a LoRA adapter on the quantized base"),
    ({**raw(quantization={}), "model": {"from_config": {"architecture": "llama"}, "quantization": {}},
      "tokenizer": {"name_or_path": "models/x"}}, "a model built from_config has none"),
    (raw(gguf_file="m.gguf", quantization={}), "convert it with `ftcli import-gguf FILE DIR`"),
    ({**raw(quantization={}), "distributed": {"fsdp": "full_shard"}}, "with distributed.fsdp is not supported"),
    (raw(quantization={"bits": 8, "type": "fp4", "compute_dtype": "float16"}),
     "model.quantization: type, compute_dtype apply to 4-bit quantization only"),
    (raw(quantization={"bits": 3}), "model.quantization.bits: input should be 4 or 8"),
    (raw(quantization={"bits": 4, "tpye": "nf4"}), "model.quantization.tpye: unknown key — did you mean type?"),
])
def test_recipe_errors(recipe, expected):
    found = problems(recipe)
    assert any(expected in p for p in found), found


def test_compute_dtype_follows_the_run_unless_set():
    from ftcli.modeling.precision import Precision
    from ftcli.modeling.quantization import compute_dtype

    auto = parse_recipe(raw(quantization={})).model.quantization
    assert compute_dtype(auto, Precision("cpu", "float32", "fp32", None)) == "float32"
    assert compute_dtype(auto, Precision("cuda", "bfloat16", "bf16", None)) == "bfloat16"
    assert compute_dtype(auto, Precision("cpu", "float32", "bf16", None)) == "bfloat16"  # autocast's dtype
    assert compute_dtype(auto, Precision("cuda", "float16", "fp16", None)) == "float16"
    fixed = parse_recipe(raw(quantization={"compute_dtype": "float16"})).model.quantization
    assert compute_dtype(fixed, Precision("cuda", "bfloat16", "bf16", None)) == "float16"


# --- errors before any work -----------------------------------------------------------------------

def _qlora_recipe(path: Path, model: Path, data: Path, output_dir: Path, bits: int = 4, **train) -> Path:
    path.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(model), "quantization": {"bits": bits}},
        "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 64},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"output_dir": str(output_dir), "max_steps": 12, "batch_size": 8, "learning_rate": 2e-2,
                  "logging_steps": 1, "report_to": [], **train},
        "generate": {"max_new_tokens": 4},
    }), encoding="utf-8")
    return path


def test_missing_bitsandbytes_is_a_clear_error_before_any_work(workdir, tiny_llama, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    data = write_jsonl(workdir / "train.jsonl", repo_rows("pirate", 20))
    recipe = _qlora_recipe(workdir / "q.yaml", tiny_llama, data, workdir / "runs" / "q")
    for command in ("validate", "finetune"):
        result = CliRunner().invoke(app, [command, str(recipe)])
        assert result.exit_code == 2, result.output
        assert "model.quantization needs the bitsandbytes package" in result.output
        assert "pip install 'ftcli[quant]'" in result.output
        assert "training rows" not in result.output  # refused before the data was read
    assert not (workdir / "runs").exists()


def test_an_apple_gpu_is_refused(monkeypatch):
    from ftcli.modeling import quantization

    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed: the missing package is reported first")
    monkeypatch.setattr(quantization, "device_kind", lambda: "mps")
    section = parse_recipe(raw(quantization={})).model.quantization
    with pytest.raises(UserError, match="trains on an Apple GPU"):
        quantization.check_available(section)


# --- layers the checkpoint lacks stay unquantized ---------------------------------------------------

@needs_bnb
@pytest.mark.parametrize("bits", [4, 8])
def test_a_new_classification_head_is_left_unquantized(tiny_bert, bits):
    """BERT's classifier is not in the checkpoint: transformers would leave an empty bitsandbytes layer
    there (it fails at the first forward). ftcli loads it again with that layer in full precision. This
    reads bitsandbytes' layer attributes, so it also fails loudly if a release renames them."""
    import torch

    from ftcli.modeling.load import load_model

    source = ModelSection(name_or_path=str(tiny_bert), quantization={"bits": bits})
    model = load_model("sequence-classification", source, label2id={"a": 0, "b": 1, "c": 2})
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert kinds["classifier"] == "Linear"
    assert kinds["bert.encoder.layer.0.attention.self.query"] == ("Linear4bit" if bits == 4 else "Linear8bitLt")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, 10, 11, 12, 3]])).logits
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


@needs_bnb
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's mappings (Linux)")
@pytest.mark.parametrize("bits", [4, 8])
def test_a_quantized_model_keeps_nothing_of_the_checkpoint_file_mapped(tiny_llama, tmp_path, bits):
    """The unquantized weights (embeddings, norms) would be views of the memory-mapped checkpoint, which
    would then stay mapped, every page quantizing read still resident (SmolLM2-135M 4-bit: 300 MB)."""
    import gc
    import shutil

    from ftcli.modeling.load import load_model

    folder = shutil.copytree(tiny_llama, tmp_path / "model")  # a path no other test has mapped
    model = load_model("causal-lm", ModelSection(name_or_path=str(folder), quantization={"bits": bits}))
    gc.collect()
    assert any(p.dtype.is_floating_point for p in model.parameters())
    assert str(folder / "model.safetensors") not in Path("/proc/self/maps").read_text()
    assert model.model.embed_tokens.weight is model.lm_head.weight or not model.config.tie_word_embeddings


@needs_bnb
def test_a_4bit_model_runs_without_gradients_where_the_cpu_inference_kernel_cannot_take_its_layers(
        tiny_llama, monkeypatch):
    """On AVX512-BF16 CPUs bitsandbytes repacks each 4-bit layer for inference at its first no-grad
    call, which fails on layers narrower than a quantization block (the tiny model's 16 inputs): ftcli
    keeps those on the training kernel. The CPU feature is forced on, so this runs on any CPU."""
    import torch
    from bitsandbytes.nn import modules

    from ftcli.modeling.load import load_model

    this_cpu_has_it = modules.has_avx512bf16()
    monkeypatch.setattr(modules, "has_avx512bf16", lambda: True)
    model = load_model("causal-lm", ModelSection(name_or_path=str(tiny_llama), quantization={"bits": 4})).eval()
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    fits = {m: m.in_features % 64 == 0 and m.out_features % 32 == 0 for m in layers}
    assert any(fits.values()) and not all(fits.values())  # the tiny model has both kinds
    assert all(m.support_avx512bf16_for_cpu == fits[m] for m in layers)
    for m in layers:  # the kernel itself needs the real CPU feature
        m.support_avx512bf16_for_cpu &= this_cpu_has_it
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([IDS[0]])).logits).all()


# --- QLoRA runs on a tiny Llama ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama re-initialised with larger weights (initializer_range 0.2). At the default 0.02 the
    final RMSNorm and the tiny tied embeddings bound every logit to about ±0.6, so no adapter can lower
    the loss much; here a LoRA adapter learns the data within a few steps (loss 6.7 -> ~4 in 30)."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, set_seed

    out = tmp_path_factory.mktemp("models") / "wide-llama"
    config = AutoConfig.from_pretrained(tiny_llama)
    config.initializer_range = 0.2
    set_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=[4, 8], ids=["4bit", "8bit"])
def qlora_run(request, wide_llama, tmp_path_factory) -> Path:
    """A 12-step QLoRA SFT run; the 4-bit one with gradient checkpointing (peft's prepare + Trainer's)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed (pip install 'ftcli[quant]')")
    root = tmp_path_factory.mktemp(f"qlora{request.param}").resolve()
    data = write_jsonl(root / "train.jsonl", repo_rows("pirate", 40))
    recipe = _qlora_recipe(root / "q.yaml", wide_llama, data, root / "runs" / "q", bits=request.param,
                           gradient_checkpointing=request.param == 4)
    return ftcli.finetune(recipe)


def _losses(run: Path) -> list[float]:
    state = json.loads((run / "checkpoint-12" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _logits(model):
    import torch

    with torch.no_grad():
        return model.eval()(torch.tensor(IDS)).logits


def test_a_qlora_run_learns_and_records_its_quantization(qlora_run):
    recipe = ftcli.load_recipe(qlora_run / "recipe.yaml")
    bits = recipe.model.quantization.bits
    losses = _losses(qlora_run)
    assert len(losses) == 12 and losses[-1] < losses[0] - 1.0, losses
    found = json.loads((qlora_run / "train_results.json").read_text())["quantization"]
    expected = {"bits": 4, "type": "nf4", "double_quant": True, "compute_dtype": "float32"} if bits == 4 else {"bits": 8}
    assert {k: v for k, v in found.items() if k != "bitsandbytes"} == expected
    assert found["bitsandbytes"]


def test_model_dir_is_the_adapter_merged_into_the_full_precision_base(qlora_run, wide_llama):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model_dir = qlora_run / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config  # loads anywhere, without bitsandbytes
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float32}

    tuned = _logits(AutoModelForCausalLM.from_pretrained(model_dir))
    base = AutoModelForCausalLM.from_pretrained(wide_llama)
    base_logits = _logits(base)
    merged = _logits(PeftModel.from_pretrained(base, qlora_run / "adapter").merge_and_unload())
    torch.testing.assert_close(tuned, merged, atol=1e-5, rtol=1e-5)
    assert (tuned - base_logits).abs().max() > 0.1  # the adapter is in it


def test_merged_export_and_model_card_of_a_qlora_run(qlora_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = ftcli.export(qlora_run, tmp_path / "merged").path
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(out)),
                               _logits(AutoModelForCausalLM.from_pretrained(qlora_run / "model")))
    bits = ftcli.load_recipe(qlora_run / "recipe.yaml").model.quantization.bits
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "- **Method:** QLoRA: LoRA (r=8" in card
    assert ("4-bit nf4 (double quantization, float32 compute)" if bits == 4 else "8-bit (LLM.int8") in card
    assert "merged into a full-precision copy of the base" in card
    adapter_card = (qlora_run / "adapter" / "README.md").read_text(encoding="utf-8")
    assert f"load_in_{bits}bit=True" in adapter_card


def test_eval_and_generate_compare_against_the_quantized_base_as_trained(qlora_run):
    from ftcli.data.splits import load_splits
    from ftcli.evaluation.scoring import score_model
    from ftcli.generation.load import load_for_generation
    from ftcli.modeling.load import load_tokenizer, local_model
    from ftcli.modeling.quantization import is_quantized, unquantized

    report = ftcli.evaluate(qlora_run, limit=4)
    recipe = ftcli.load_recipe(qlora_run / "recipe.yaml")
    bits = recipe.model.quantization.bits
    assert report["base_quantization"]["bits"] == bits
    splits = load_splits(recipe)
    tokenizer = load_tokenizer(local_model(qlora_run / "model"))

    def loss(source) -> float:
        return score_model(recipe, splits.mode, source, tokenizer, splits.eval[:4], None, format=splits.format)[0]["loss"]

    assert report["base"]["loss"] == pytest.approx(loss(recipe.model), rel=1e-6)
    assert abs(report["base"]["loss"] - loss(unquantized(recipe.model))) > 1e-4  # not the full-precision base
    assert report["tuned"]["loss"] < report["base"]["loss"]

    assert is_quantized(load_for_generation(qlora_run, base=True).model)
    assert not is_quantized(load_for_generation(qlora_run).model)


# --- the proof on SmolLM2-135M (slow) -------------------------------------------------------------

SMOL = REPO / "models" / "smollm2-135m-instruct"
# One run in a fresh process: its peak RSS (VmHWM) is the run's own.
MEASURE = """
import json, sys
import ftcli
from ftcli.training.memory_estimate import peak_rss
run = ftcli.finetune(ftcli.load_recipe(sys.argv[1], sys.argv[2:]))
peak = peak_rss()  # before eval and generate load more
report = ftcli.evaluate(run, limit=16)
answer = ftcli.generate("What is the capital of Japan?", run)
print(json.dumps({"peak_rss": peak, "base_ppl": report["base"]["perplexity"], "tuned_ppl": report["tuned"]["perplexity"],
                  "answer": answer, "runtime": json.loads((run / "train_results.json").read_text())["train_runtime"]}))
"""


def _measured(tmp_path: Path, name: str, *overrides: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(REPO / "recipes" / "demo-smollm2-lora.yaml"),
                          f"model.name_or_path={SMOL}", f"train.output_dir={tmp_path / name}",
                          f"data.train={REPO / 'data/pirate/train.jsonl'}", "data.max_train_samples=160",
                          "train.max_steps=20", "train.report_to=[]", *overrides],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_bnb
def test_qlora_on_smollm2_learns_the_pirate_style_in_less_memory(tmp_path):
    if not SMOL.exists():
        pytest.skip(f"{SMOL} not found: run `make models`")
    runs = {"fp32 LoRA": _measured(tmp_path, "lora"),
            "QLoRA 4-bit": _measured(tmp_path, "q4", "model.quantization.bits=4"),
            "QLoRA 8-bit": _measured(tmp_path, "q8", "model.quantization.bits=8")}
    for name, found in runs.items():
        print(f"{name}: peak RSS {found['peak_rss'] / 2**20:.0f} MiB, perplexity {found['base_ppl']:.1f} -> "
              f"{found['tuned_ppl']:.2f}, {found['runtime']:.0f}s; {found['answer'][:60]!r}")
    for name in ("QLoRA 4-bit", "QLoRA 8-bit"):
        found = runs[name]
        assert found["tuned_ppl"] < found["base_ppl"] / 5, (name, found)
        assert found["answer"].startswith("Arr"), (name, found)
        assert found["peak_rss"] < runs["fp32 LoRA"]["peak_rss"], (name, found, runs["fp32 LoRA"])


def test_dpo_on_a_4bit_base_learns_and_evals_against_the_quantized_reference(wide_llama, tmp_path_factory):
    """QLoRA preference tuning: the reference is the 4-bit base with adapters disabled, as trained, and
    eval's base column is that quantized base."""
    from test_preference import dpo_recipe, write_pairs
    from test_end_to_end import write_recipe

    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed (pip install 'ftcli[quant]')")
    root = tmp_path_factory.mktemp("qlora-dpo").resolve()
    raw = dpo_recipe(wide_llama, write_pairs(root), output_dir=str(root / "runs" / "dpo"), max_steps=16)
    raw["model"]["quantization"] = {"bits": 4}
    run = ftcli.finetune(write_recipe(root / "dpo.yaml", raw))
    assert json.loads((run / "train_results.json").read_text())["quantization"]["bits"] == 4

    report = ftcli.evaluate(run)
    assert report["base_quantization"]["bits"] == 4
    tuned, base = report["tuned"], report["base"]
    assert tuned["preference_accuracy"] == 1.0 and tuned["reward_margin"] > 0
    assert tuned["logprob_preference"] > base["logprob_preference"]
