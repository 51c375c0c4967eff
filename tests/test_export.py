"""`ftcli export` / `ftcli.export`: merged model, peft adapter and GGUF exports that load without
ftcli, the model card written with every run and export, and pushing to the Hub (mocked: tests
never reach the network)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

import ftcli
from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.errors import UserError
from ftcli.exporting.model_card import split_card

IDS = [[5, 17, 42, 99, 7, 3, 200, 11]]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_llama) -> Path:
    """One tiny LoRA SFT run (6 steps, a few seconds), shared by the tests of this module."""
    root = tmp_path_factory.mktemp("export").resolve()
    data = write_jsonl(root / "train.jsonl", repo_rows("pirate", 40))
    recipe = root / "lora.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 96},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "train": {"output_dir": str(root / "runs" / "lora"), "max_steps": 6, "batch_size": 8,
                  "learning_rate": 5e-2, "logging_steps": 10},
    }), encoding="utf-8")
    return ftcli.finetune(recipe)


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.delenv("FTCLI_DEBUG", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def card_of(folder: Path, name: str = "README.md") -> tuple[dict, str]:
    return split_card((folder / name).read_text(encoding="utf-8"))


def recipe_block(body: str) -> dict:
    match = re.search(r"## Recipe\n.*?```yaml\n(.*?)\n```", body, re.DOTALL)
    assert match, body
    return yaml.safe_load(match.group(1))


def ftcli_logits(run: Path):
    """The run's tuned model as ftcli itself loads it."""
    import torch

    from ftcli.modeling.load import load_model, local_model

    model = load_model("causal-lm", local_model(run / "model")).eval()
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def logits_of(model):
    import torch

    with torch.no_grad():
        return model.eval()(torch.tensor(IDS)).logits


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# --- model cards ----------------------------------------------------------------------------------

def test_run_cards_are_written_by_finetune_and_refreshed_by_eval(lora_run, tiny_llama):
    saved_recipe = yaml.safe_load((lora_run / "recipe.yaml").read_text())
    for folder, library in (("model", "transformers"), ("adapter", "peft")):
        meta, body = card_of(lora_run / folder)
        assert meta["library_name"] == library and meta["license"] == "other"  # the tiny base has no card
        assert meta["pipeline_tag"] == "text-generation"
        assert {"ftcli", "causal-lm", "lora"} <= set(meta["tags"])
        assert "base_model" not in meta  # a local base is not a Hub id
        assert not any(str(t).startswith("base_model:") for t in meta["tags"])
        assert f"`{tiny_llama}`, a local directory" in body
        assert recipe_block(body) == saved_recipe
        assert "r=4, alpha=8.0" in body and "| train | " in body and "train_loss:" in body
        assert "No eval results yet" in body
    _, adapter_body = card_of(lora_run / "adapter")
    assert "More Information Needed" not in adapter_body  # peft's template card was replaced
    assert "PeftModel.from_pretrained" in adapter_body

    results = ftcli.evaluate(lora_run, limit=4)
    meta, body = card_of(lora_run / "model")
    assert meta["library_name"] == "transformers"
    assert "No eval results yet" not in body
    assert "| metric | base | tuned | change |" in body
    loss_row = next(line for line in body.splitlines() if line.startswith("| loss |"))
    assert f"{results['tuned']['loss']:.4f}".rstrip("0") in loss_row
    assert "Eval on 4 examples" in body


def test_license_comes_from_the_base_models_card(tmp_path):
    from ftcli.exporting.model_card import infer_license

    base = tmp_path / "base"
    base.mkdir()
    recipe = SimpleNamespace(model=SimpleNamespace(name_or_path=str(base)))
    assert infer_license(recipe) is None
    (base / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: [en]\n---\n# A model\n")
    assert infer_license(recipe) == "apache-2.0"
    (base / "README.md").write_text("# no front matter\n")
    assert infer_license(recipe) is None


def test_front_matter_for_hub_base_and_hub_data(workdir):
    from ftcli.exporting.model_card import front_matter, hub_base_model
    from ftcli.recipe import Recipe

    recipe = Recipe.model_validate({"task": "seq2seq", "model": {"name_or_path": "google-t5/t5-small"},
                                    "data": {"train": {"name": "bentrevett/multi30k"}},
                                    "lora": {"r": 8}})
    meta = front_matter(recipe, "adapter", "apache-2.0", hub_base_model(recipe), ["lora", "base_model:adapter:x"])
    assert meta == {"license": "apache-2.0", "base_model": "google-t5/t5-small", "library_name": "peft",
                    "tags": ["ftcli", "seq2seq", "lora", "peft"], "datasets": ["bentrevett/multi30k"],
                    "pipeline_tag": "text2text-generation"}


# --- merged and adapter exports -------------------------------------------------------------------

def test_merged_export_loads_with_plain_transformers(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = ftcli.export(lora_run, out, "merged")
    assert result.path == out.resolve() and result.repo_id is None
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(result.files)

    exported = logits_of(AutoModelForCausalLM.from_pretrained(out))
    assert max_diff(exported, ftcli_logits(lora_run)) <= 1e-5
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and tokenizer("Arr, matey")["input_ids"]

    meta, body = card_of(out)
    assert meta["library_name"] == "transformers"
    assert f'AutoModelForCausalLM.from_pretrained("{out.resolve()}")' in body
    assert recipe_block(body) == yaml.safe_load((lora_run / "recipe.yaml").read_text())


def test_adapter_export_loads_with_plain_peft(lora_run, tiny_llama, tmp_path):
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "adapter"
    result = ftcli.export(lora_run, out, "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(result.files)
    assert not any("safetensors" in f and f != "adapter_model.safetensors" for f in result.files)  # no full weights

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_llama)  # the recipe's base, as written
    reference = ftcli_logits(lora_run)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), out)
    assert max_diff(logits_of(adapted), reference) <= 1e-5
    assert max_diff(logits_of(AutoPeftModelForCausalLM.from_pretrained(out)), reference) <= 1e-5

    exported_tokenizer = AutoTokenizer.from_pretrained(out)
    run_tokenizer = AutoTokenizer.from_pretrained(lora_run / "model")
    text = "Why is the sky blue? Arr!"
    assert exported_tokenizer(text)["input_ids"] == run_tokenizer(text)["input_ids"]
    assert exported_tokenizer.chat_template == run_tokenizer.chat_template

    meta, _ = card_of(out)
    assert meta["library_name"] == "peft" and "peft" in meta["tags"]


def test_adapter_export_with_hub_base_model_and_license(lora_run, tiny_llama, tmp_path):
    out = tmp_path / "adapter"
    ftcli.export(lora_run, out, "adapter", base_model="HuggingFaceTB/SmolLM2-135M-Instruct", license="apache-2.0")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # the run itself is untouched
    assert json.loads((lora_run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] \
        == str(tiny_llama)
    meta, body = card_of(out)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert 'from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in body
    assert "Licence:** not determined" not in body


def test_cli_export_and_overwrite(lora_run, tmp_path, cli):
    out = tmp_path / "exports" / "merged"
    result = cli("export", lora_run, "--merged", "--to", out)
    assert result.exit_code == 0, result.output
    assert f"exported: {out.resolve()}" in result.stdout

    again = cli("export", lora_run, "--adapter", "--to", out)
    assert again.exit_code == 2 and "not empty" in again.output and "--overwrite" in again.output

    replaced = cli("export", lora_run, "--adapter", "--to", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()


@pytest.fixture(scope="module")
def full_run(lora_run, tmp_path_factory) -> Path:
    """A finished run without adapter/ (what a full fine-tune writes)."""
    run = tmp_path_factory.mktemp("full") / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("checkpoint-*", "adapter"))
    return run


def _gpt2_run(lora_run: Path, root: Path) -> Path:
    run = root / "gpt2-run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((run / "model" / "config.json").read_text())
    (run / "model" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    return run


@pytest.mark.parametrize("args, message", [
    (["--to", "out"], "give one of --merged, --adapter or --gguf FILE"),
    (["--merged", "--adapter", "--to", "out"], "give only one of --merged, --adapter"),
    (["--merged", "--gguf", "x.gguf"], "give only one of --merged, --gguf"),
    (["--merged"], "--to DIR"),
    (["--gguf", "x.gguf", "--to", "out"], "--to is for --merged and --adapter"),
    (["--gguf", "x.bin"], "must end in .gguf"),
    (["--gguf", "x.gguf", "--gguf-type", "q4_k"], "unknown GGUF type"),
    (["--merged", "--gguf-type", "q8_0", "--to", "out"], "--gguf-type applies to --gguf only"),
    (["--merged", "--to", "{run}/model/x"], "inside the run's model/"),
    (["--merged", "--to", "{run}/.."], "holds the run"),
    (["--merged", "--to", "."], "the current directory"),
    (["--merged", "--to", "out", "--push-to-hub", "not a repo!"], "not a valid repo id"),
])
def test_cli_refuses_bad_arguments(lora_run, workdir, cli, args, message):
    result = cli("export", lora_run, *[a.format(run=lora_run) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (workdir / "out").exists() and not (workdir / "x.gguf").exists()


def test_errors_for_runs_that_cannot_be_exported(lora_run, full_run, workdir, cli):
    unfinished = workdir / "unfinished"
    unfinished.mkdir()
    (unfinished / "recipe.yaml").write_text((lora_run / "recipe.yaml").read_text())
    result = cli("export", unfinished, "--merged", "--to", "out")
    assert result.exit_code == 2 and "not a finished run" in result.output

    result = cli("export", full_run, "--adapter", "--to", "out")
    assert result.exit_code == 2 and "no LoRA adapter" in result.output and "--merged" in result.output
    assert cli("export", full_run, "--merged", "--to", "out").exit_code == 0  # a full run exports merged

    gpt2 = _gpt2_run(lora_run, workdir)
    result = cli("export", gpt2, "--gguf", "m.gguf")
    assert result.exit_code == 2 and "Llama-family" in result.output and "gpt2" in result.output

    (workdir / "busy").mkdir()
    (workdir / "busy" / "notes.txt").write_text("mine")
    result = cli("export", lora_run, "--merged", "--to", "busy", "--overwrite")
    assert result.exit_code == 2 and "not an exported model" in result.output
    assert (workdir / "busy" / "notes.txt").read_text() == "mine"

    with pytest.raises(UserError, match="unknown export kind"):
        ftcli.export(lora_run, workdir / "x", "onnx")


def test_public_api_stays_a_function():
    import ftcli.exporting.export  # noqa: F401  (importing the backing module must not shadow ftcli.export)

    assert callable(ftcli.export) and "export" in ftcli.__all__


# --- GGUF -----------------------------------------------------------------------------------------

@pytest.fixture
def fake_gguf(monkeypatch):
    """ftcli.exporting.gguf replaced by a recorder that writes a stub file."""
    calls = []

    def export_gguf(model_dir, out_file, dtype="f16"):
        calls.append((Path(model_dir), Path(out_file), dtype))
        Path(out_file).write_bytes(b"GGUF stub")
        return Path(out_file)

    module = types.ModuleType("ftcli.exporting.gguf")
    module.export_gguf = export_gguf
    module.SUPPORTED_ARCHITECTURES = ("llama",)
    monkeypatch.setitem(sys.modules, "ftcli.exporting.gguf", module)
    import ftcli.exporting

    monkeypatch.setattr(ftcli.exporting, "gguf", module, raising=False)
    return calls


def test_cli_gguf_wiring(lora_run, workdir, cli, fake_gguf):
    result = cli("export", lora_run, "--gguf", "out/pirate.gguf")
    assert result.exit_code == 0, result.output
    assert fake_gguf == [(lora_run / "model", workdir / "out" / "pirate.gguf", "f16")]  # f16 by default

    meta, body = card_of(workdir / "out", "pirate.md")  # the card beside the file
    assert "gguf" in meta["tags"] and "library_name" not in meta
    assert "llama-cli -m pirate.gguf" in body and "GGUF (f16)" in body

    exists = cli("export", lora_run, "--gguf", "out/pirate.gguf", "--gguf-type", "q8_0")
    assert exists.exit_code == 2 and "--overwrite" in exists.output
    result = cli("export", lora_run, "--gguf", "out/pirate.gguf", "--gguf-type", "q8_0", "--overwrite")
    assert result.exit_code == 0, result.output
    assert fake_gguf[-1][2] == "q8_0" and "GGUF (q8_0)" in card_of(workdir / "out", "pirate.md")[1]


def test_gguf_export_writes_a_llama_gguf_file(lora_run, tmp_path):
    pytest.importorskip("gguf")
    pytest.importorskip("ftcli.exporting.gguf")
    from gguf import GGUFReader

    out = tmp_path / "pirate-q8_0.gguf"
    result = ftcli.export(lora_run, out, "gguf", gguf_type="q8_0")
    assert result.files == ["pirate-q8_0.gguf", "pirate-q8_0.md"]
    reader = GGUFReader(out)
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    assert (tmp_path / "pirate-q8_0.md").is_file()


# --- pushing to the Hub ---------------------------------------------------------------------------

class FakeHfApi:
    """Records calls; `upload_folder` lists the folder while it exists (a push-only export's folder
    is temporary)."""

    calls: list = []
    fail_with: Exception | None = None

    def __init__(self, token=None, **_):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", repo_id, kwargs))
        if FakeHfApi.fail_with is not None:
            raise FakeHfApi.fail_with
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}",
                               url=f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        files = sorted(p.name for p in folder.iterdir())
        FakeHfApi.calls.append(("upload_folder", repo_id, {"files": files, "card": (folder / "README.md").read_text(),
                                                           **kwargs}))
        return SimpleNamespace(commit_url="https://huggingface.co/commit/1")


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    FakeHfApi.calls, FakeHfApi.fail_with = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    return FakeHfApi


def test_push_to_hub_uploads_the_export(lora_run, tmp_path, hub):
    result = ftcli.export(lora_run, None, "adapter", push_to_hub="pirate-lora")  # only pushed: a temp folder
    assert result.path is None and result.repo_id == "me/pirate-lora"
    (name, repo, kwargs), (name2, repo2, upload) = hub.calls
    assert (name, repo, kwargs["exist_ok"], kwargs["private"]) == ("create_repo", "pirate-lora", True, None)
    assert (name2, repo2) == ("upload_folder", "me/pirate-lora")  # the id the Hub returned
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= set(upload["files"])
    assert 'PeftModel.from_pretrained(base, "pirate-lora")' in upload["card"]


def test_cli_push_merged_private(lora_run, workdir, cli, hub):
    result = cli("export", lora_run, "--merged", "--to", "merged", "--push-to-hub", "me/pirate", "--private")
    assert result.exit_code == 0, result.output
    assert "pushed: https://huggingface.co/me/pirate" in result.stdout
    (_, repo, kwargs), (_, repo2, upload) = hub.calls
    assert repo == repo2 == "me/pirate" and kwargs["private"] is True
    assert {"config.json", "model.safetensors", "README.md"} <= set(upload["files"])
    assert split_card(upload["card"])[0]["library_name"] == "transformers"
    assert (workdir / "merged" / "README.md").read_text() == upload["card"]  # the local copy is what was pushed


def test_cli_push_gguf_uploads_file_and_card(lora_run, workdir, cli, hub, fake_gguf):
    result = cli("export", lora_run, "--gguf", "pirate.gguf", "--push-to-hub", "me/pirate-gguf")
    assert result.exit_code == 0, result.output
    upload = hub.calls[1][2]
    assert upload["files"] == ["README.md", "pirate.gguf"]
    assert "gguf" in split_card(upload["card"])[0]["tags"]


def _http_error(status: int):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    return HfHubHTTPError(f"{status} Client Error", response=response)


def test_push_errors_are_user_errors_with_hints(lora_run, workdir, cli, hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    hub.fail_with = _http_error(403)
    result = cli("export", lora_run, "--merged", "--to", "a", "--push-to-hub", "me/pirate")
    assert result.exit_code == 2 and "no write access to me/pirate" in result.output and "hint:" in result.output

    hub.fail_with = _http_error(401)
    result = cli("export", lora_run, "--merged", "--to", "b", "--push-to-hub", "me/pirate")
    assert result.exit_code == 2 and "refused the token" in result.output and "hf auth login" in result.output

    hub.fail_with = ConnectionError("Name or service not known")
    result = cli("export", lora_run, "--merged", "--to", "c", "--push-to-hub", "me/pirate")
    assert result.exit_code == 2 and "cannot reach the Hugging Face Hub" in result.output

    hub.fail_with, calls_before = None, len(hub.calls)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = cli("export", lora_run, "--merged", "--to", "d", "--push-to-hub", "me/pirate")
    assert result.exit_code == 2 and "offline mode" in result.output and "HF_HUB_OFFLINE" in result.output
    assert not (workdir / "d").exists()  # checked before exporting anything

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    result = cli("export", lora_run, "--merged", "--to", "e", "--push-to-hub", "me/pirate")
    assert result.exit_code == 2 and "no token" in result.output and "HF_TOKEN" in result.output
    assert len(hub.calls) == calls_before and not (workdir / "e").exists()
