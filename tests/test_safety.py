"""Safety guarantees: recipes never crash the loader or run code, runs never land on top of unrelated
files, pickle weights and remote code are opt-in, tokens never leak into a run, and a non-finite loss
never produces a saved model."""

from __future__ import annotations

import math
import os
import tempfile
import traceback
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.errors import ModelError, TrainingFailed, UserError
from ftcli.recipe import Recipe, load_recipe, parse_recipe
from ftcli.recipe import TASKS, DataSource

runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args))


# --------------------------------------------------------------------------------------------------
# 1. The loader returns a Recipe or raises UserError, whatever it is fed.
# --------------------------------------------------------------------------------------------------

def _schema_keys(model: type[BaseModel], seen: set | None = None) -> set[str]:
    """Every key name the schema knows, in every section."""
    seen = set() if seen is None else seen
    keys: set[str] = set()
    if model in seen:
        return keys
    seen.add(model)
    for name, field in model.model_fields.items():
        keys.add(name)
        for member in getattr(field.annotation, "__args__", (field.annotation,)):
            if isinstance(member, type) and issubclass(member, BaseModel):
                keys |= _schema_keys(member, seen)
    return keys


SCHEMA_KEYS = sorted(_schema_keys(Recipe))
assert {"task", "model", "data", "train", "name_or_path", "output_dir", "target_modules"} <= set(SCHEMA_KEYS)

# Open bugs found by these properties, recognised narrowly so the properties can keep running while one is
# being fixed (each then gets an xfail(strict=True) regression test below). Entries:
#   (bug, exception types, text in its message, function in its traceback, file it was raised in)
KNOWN_BUGS: list = []  # none open


def _known_bug(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    names, innermost = [f.name for f in frames], frames[-1].filename if frames else ""
    for bug, kinds, text, where, file in KNOWN_BUGS:
        if isinstance(exc, kinds) and text in str(exc) and where in names and innermost.endswith(file):
            return bug
    return None


def _check_loader(call):
    """Run a loader call; it must return a Recipe or raise UserError (known open bugs aside)."""
    try:
        result = call()
    except UserError as exc:
        event("UserError")
        assert str(exc)  # an explanation, not an empty message
        return None
    except Exception as exc:  # noqa: BLE001 - the property under test
        if bug := _known_bug(exc):
            event(f"known bug {bug}")
            assume(False)  # pinned by a regression test below; don't let it mask other bugs
        raise AssertionError(f"loader raised {type(exc).__name__} (not UserError): {exc}") from exc
    event("valid Recipe")
    assert isinstance(result, Recipe)
    return result


keys = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=8))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(SCHEMA_KEYS))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=3)),
                      max_leaves=8)
# Mostly scalars, so that a section often gets past its type check and is validated key by key.
light = st.one_of(scalars, scalars, st.lists(scalars, max_size=3), values)
tasks = st.one_of(st.sampled_from(["causal-lm", "sequence-classification"]), st.text(max_size=12), scalars, light)
sections = st.dictionaries(st.sampled_from(SCHEMA_KEYS), light, max_size=4)
section_or_value = st.one_of(sections, sections, light)


@st.composite
def recipe_like(draw):
    """A document shaped like a recipe: real section names, partly real keys, random values."""
    doc = draw(st.dictionaries(keys, light, max_size=2))
    doc["task"] = draw(tasks)
    doc["model"] = draw(section_or_value)
    data = draw(section_or_value)
    if isinstance(data, dict) and draw(st.booleans()):
        data["train"] = draw(st.one_of(st.text(max_size=12), light))
    doc["data"] = data
    for name in draw(st.sets(st.sampled_from(["train", "eval", "generate", "lora"]), max_size=2)):
        doc[name] = draw(section_or_value)
    return doc


def _fitting(annotation) -> st.SearchStrategy:
    """Values of a field's declared type (range limits aside), to produce valid recipes too."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(_fitting(args[0]), max_size=3)
    if args:  # a union (X | None, str | list[str])
        return st.one_of([_fitting(a) for a in args])
    simple = {type(None): st.none(), bool: st.booleans(), int: st.integers(1, 500), float: st.floats(0.01, 0.99),
              str: st.text(max_size=10)}
    return simple.get(annotation, light)  # dicts, models: anything


def _section_fields() -> dict[str | None, dict[str, st.SearchStrategy]]:
    """Each section's keys (None: the top level), with a strategy for values that fit each."""
    fields: dict = {None: {name: light for name in Recipe.model_fields}}
    for name, field in Recipe.model_fields.items():
        for member in getattr(field.annotation, "__args__", (field.annotation,)):
            if isinstance(member, type) and issubclass(member, BaseModel):
                fields[name] = {key: _fitting(f.annotation) for key, f in member.model_fields.items()}
    return fields


SECTION_FIELDS = _section_fields()
assert {"model", "data", "train", "lora"} <= set(SECTION_FIELDS)
field_values = st.one_of(light, st.integers(-2, 300), st.floats(-1, 2), st.sampled_from(
    ["linear", "stop", "skip", "all-linear", "accuracy", "f1", "perplexity", "loss", "x.jsonl", "", "0"]))


@st.composite
def mutated_recipe(draw):
    """A valid minimal recipe with a few keys of real sections set to random values: often ones of
    the field's type (so that many mutants are valid), sometimes anything."""
    doc = {"task": draw(st.sampled_from(["causal-lm", "sequence-classification"])),
           "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}}
    sections_first = [name for name in SECTION_FIELDS if name is not None] * 3 + [None]  # top level: rarer
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        section = draw(st.sampled_from(sections_first))
        key = draw(st.one_of(st.sampled_from(sorted(SECTION_FIELDS[section])), keys))
        fits = SECTION_FIELDS[section].get(key, field_values)
        value = draw(st.one_of(fits, fits, field_values))
        if section is None:
            doc[key] = value
        else:
            target = doc.setdefault(section, {})
            if isinstance(target, dict):
                target[key] = value
    return doc


documents = st.one_of(values, recipe_like(), mutated_recipe(), mutated_recipe())


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
@example({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "x.jsonl"}, "train": {"epochs": math.nan}})
@example({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "x.jsonl"}, "train": {"batch_size": True}})
@example({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "x"}, "eval": {"metrics": [[1], {}, None]}})
@example({"task": "causal-lm", "model": {"name_or_path": 1, 2: 3}, "data": {"train": "x"}})
@example({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": []}})
def test_parse_recipe_returns_a_recipe_or_raises_user_error(doc):
    recipe = _check_loader(lambda: parse_recipe(doc))
    if recipe is not None:  # whatever got through is well-formed
        assert recipe.task in TASKS
        train = recipe.data.train
        assert isinstance(train, (str, DataSource)) or (isinstance(train, list) and train)
        assert isinstance(recipe.eval.metrics, list)


_YAML_DIR = tempfile.TemporaryDirectory(prefix="ftcli-yaml-")
_YAML_FILE = Path(_YAML_DIR.name) / "recipe.yaml"

yaml_tokens = st.one_of(
    st.sampled_from(SCHEMA_KEYS), st.sampled_from(["causal-lm", "sequence-classification"]),
    st.sampled_from([":", ": ", "- ", "-", "{", "}", "[", "]", ", ", "\n", "\n  ", "\n    ", "\t", " ",
                     "? ", "&a ", "*a", "&b ", "*b", "<<: ", "!!python/object:os.system ", "!!str ",
                     "!!python/object/apply:os.system ", "!!int ", "!!binary ", "!!set ", "!!omap ", "|\n  ",
                     ">\n  ", "'", '"', "#", "---\n", "...\n", "~", "null", "true", "1e400", ".nan", "-.inf",
                     "0x1F", "2001-01-01", "%YAML 1.1\n", "\\", "\ufeff"]),
    st.text(max_size=8), st.integers().map(str), st.floats().map(str))
recipe_yaml = st.builds(
    lambda task, rest: f"task: {task}\nmodel:\n  name_or_path: m\ndata:\n  train: t.jsonl\n{rest}",
    st.one_of(st.sampled_from(["causal-lm", "sequence-classification"]), st.text(max_size=10)),
    st.lists(yaml_tokens, max_size=30).map("".join))
dumped = mutated_recipe().map(lambda doc: yaml.safe_dump(doc, allow_unicode=True))  # valid YAML, often a valid recipe
yaml_texts = st.one_of(st.text(), st.lists(yaml_tokens, max_size=40).map("".join), recipe_yaml, dumped,
                       st.tuples(dumped, yaml_tokens).map("".join))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_texts)
@example("task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: x}\ntrain: {report_to: &a [*a]}\n")
@example("task: causal-lm\nmodel: &m {name_or_path: *m}\ndata: {train: x}\n")
@example("task: causal-lm\ntask: causal-lm\n")
@example("!!python/object/apply:subprocess.check_output [[touch, pwned]]")
@example("\x00\x01")
def test_load_recipe_returns_a_recipe_or_raises_user_error(text):
    try:
        _YAML_FILE.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be written as UTF-8; nothing to load
        assume(False)
    _check_loader(lambda: load_recipe(_YAML_FILE))


def test_a_recipe_can_never_execute_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    for text in (f"!!python/object/apply:os.system ['touch {marker}']\n",
                 f"task: !!python/object/apply:os.system ['touch {marker}']\n",
                 "task: !!python/name:os.system\n"):
        recipe = tmp_path / "evil.yaml"
        recipe.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match="YAML"):
            load_recipe(recipe)
        result = run_cli("validate", str(recipe))
        assert result.exit_code == 2, result.output
    assert not marker.exists()


# Regression tests for the bugs the properties found (all fixed): minimal inputs that must give a UserError.

BUG_CASES = [  # (bug, what it used to raise, input: a dict for parse_recipe, text for load_recipe)
    ("unhashable-task", TypeError, {"task": [], "model": {"name_or_path": "m"}, "data": {"train": "x"}}),
    ("strict-loader", TypeError, "{[a]: 1}\n"),  # a complex (unhashable) key
    ("strict-loader", ValueError, "!!set 0\n"),  # a mapping tag on a scalar
    ("yaml-tagged-scalar", IndexError, "!!int\n"),
    ("yaml-tagged-scalar", ValueError, "train: !!float x\n"),
    ("nul-in-path", ValueError, 'task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: x}\ntrain: {output_dir: "a\\0b"}\n'),
    ("unknown-user", RuntimeError, "task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: ~no_such_user_ftcli/x.jsonl}\n"),
    ("name-too-long", OSError, f"task: causal-lm\nmodel: {{}}\ndata: {{train: {'a' * 300}}}\n"),
]


@pytest.mark.parametrize("bug, doc", [
    pytest.param(bug, doc, id=f"{bug}-{i}",
                 )
    for i, (bug, kind, doc) in enumerate(BUG_CASES)])
def test_known_bug_inputs_give_a_user_error(bug, doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.yaml"
    if isinstance(doc, str):
        path.write_text(doc, encoding="utf-8")
    try:
        parse_recipe(doc) if isinstance(doc, dict) else load_recipe(path)
    except UserError:
        return
    except Exception as exc:  # noqa: BLE001
        assert _known_bug(exc) == bug, f"{type(exc).__name__}: {exc}"
        raise
    raise AssertionError("accepted")


def test_deeply_nested_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    with pytest.raises(UserError):
        load_recipe(path)


# --------------------------------------------------------------------------------------------------
# Shared helpers for the CLI tests: a tiny, valid recipe on real data and the tiny Llama.
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def workdir(workdir, monkeypatch) -> Path:
    monkeypatch.delenv("FTCLI_DEBUG", raising=False)
    return workdir


def tiny_recipe(workdir: Path, model: Path, output_dir: str = "runs/safe", **train) -> Path:
    data = workdir / "data" / "train.jsonl"
    if not data.exists():
        write_jsonl(data, repo_rows("pirate", 16))
    recipe = {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 64},
        "train": {"output_dir": output_dir, "max_steps": 2, "batch_size": 4, "logging_steps": 1, **train},
    }
    path = workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path below `folder` with its bytes (None for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


# --------------------------------------------------------------------------------------------------
# 2. Dangerous output folders are refused before anything is written.
# --------------------------------------------------------------------------------------------------

def assert_refused_untouched(recipe: Path, folder: Path, *phrases: str) -> None:
    """finetune, with and without --overwrite, exits 2 naming the problem and changes nothing in `folder`."""
    before = snapshot(folder)
    for extra in ([], ["--overwrite"]):
        result = run_cli("finetune", str(recipe), *extra)
        assert result.exit_code == 2, result.output
        assert all(phrase in result.output for phrase in phrases), result.output
        assert snapshot(folder) == before


def test_output_dir_cwd_is_refused(workdir, tiny_llama):
    recipe = tiny_recipe(workdir, tiny_llama, output_dir=".")
    assert_refused_untouched(recipe, workdir, "current directory")


def test_output_dir_filesystem_root_is_refused(workdir, tiny_llama):
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="/")
    before = sorted(os.listdir("/"))
    for extra in ([], ["--overwrite"]):
        result = run_cli("finetune", str(recipe), *extra)
        assert result.exit_code == 2, result.output
        assert "filesystem root" in result.output
    assert sorted(os.listdir("/")) == before


@pytest.mark.parametrize("spelling", ["~", "HOME"])
def test_output_dir_home_is_refused(workdir, tiny_llama, monkeypatch, spelling):
    home = workdir / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export KEEP=me\n")
    monkeypatch.setenv("HOME", str(home))
    assert Path.home() == home
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="~" if spelling == "~" else str(home))
    assert_refused_untouched(recipe, home, "home directory")


def test_existing_folder_that_is_not_a_run_is_refused_and_untouched(workdir, tiny_llama):
    target = workdir / "precious"
    (target / "sub").mkdir(parents=True)
    (target / "thesis.txt").write_text("years of work")
    (target / "model.safetensors").write_bytes(b"\x00" * 64)  # ours-sounding names are not a run either
    (target / "train_results.json").write_text("{}")
    (target / "sub" / "notes.md").write_text("more")
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="precious")
    assert_refused_untouched(recipe, target, "not an ftcli run")


def _trainer_checkpoint(folder: Path) -> None:
    """A checkpoint as a plain transformers Trainer leaves it: no ftcli marker."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x01" * 64)
    (folder / "optimizer.pt").write_bytes(b"\x02" * 64)
    (folder / "trainer_state.json").write_text('{"global_step": 10}')


def test_a_plain_trainer_output_folder_is_refused_and_untouched(workdir, tiny_llama):
    # Only checkpoint-* folders, none of them ftcli's: not a run (resuming used to delete them all,
    # and Trainer's save_total_limit rotation would too).
    target = workdir / "trainer-out"
    for step in (10, 20):
        _trainer_checkpoint(target / f"checkpoint-{step}")
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="trainer-out")
    assert_refused_untouched(recipe, target, "not an ftcli run")


def test_checkpoints_ftcli_did_not_write_are_never_deleted(workdir, tiny_llama):
    target = workdir / "runs" / "mixed"
    target.mkdir(parents=True)
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="runs/mixed")
    (target / "recipe.yaml").write_text(recipe.read_text())  # an ftcli run ...
    _trainer_checkpoint(target / "checkpoint-10")  # ... beside a checkpoint it did not write
    assert_refused_untouched(recipe, target, "checkpoint-10, not written by ftcli", "move them out")


def test_existing_ftcli_run_folder_is_accepted(workdir, tiny_llama):
    target = workdir / "runs" / "old"
    target.mkdir(parents=True)
    recipe = tiny_recipe(workdir, tiny_llama, output_dir="runs/old")
    (target / "recipe.yaml").write_text(recipe.read_text())  # what an earlier (unfinished) run left
    (target / "README.txt").write_text("my notes")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == 0, result.output
    assert (target / "model" / "config.json").is_file() and (target / "train_results.json").is_file()
    assert (target / "README.txt").read_text() == "my notes"


# --------------------------------------------------------------------------------------------------
# 3. Pickle weights are opt-in; 4. so is remote code.
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pickle_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama with its weights as pytorch_model.bin only (transformers 5 dropped
    save_pretrained(safe_serialization=False), so the state dict is pickled by hand)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("models") / "pickle-llama"
    shutil.copytree(tiny_llama, out, ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json"))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    assert not list(out.glob("*.safetensors")) and (out / "config.json").is_file()
    return out


def test_pickle_weights_are_refused_unless_allowed(workdir, pickle_llama):
    recipe = tiny_recipe(workdir, pickle_llama)
    refused = run_cli("finetune", str(recipe))
    assert refused.exit_code == 2, refused.output
    assert "allow_pickle_weights" in refused.output and "pickle" in refused.output
    assert not (workdir / "runs").exists()  # refused before the run directory was made

    allowed = run_cli("finetune", str(recipe), "--set", "model.allow_pickle_weights=true")
    assert allowed.exit_code == 0, allowed.output
    saved = yaml.safe_load((workdir / "runs" / "safe" / "recipe.yaml").read_text())
    assert saved["model"]["allow_pickle_weights"] is True
    assert list((workdir / "runs" / "safe" / "model").glob("*.safetensors"))  # what we write is safe


def test_load_model_refuses_pickle_directly(pickle_llama):
    from ftcli.modeling.load import load_model, local_model

    with pytest.raises(ModelError, match="pickle") as raised:
        load_model("causal-lm", local_model(pickle_llama))
    assert "allow_pickle_weights" in raised.value.render()


def test_trust_remote_code_defaults_to_false(workdir, tiny_llama, monkeypatch):
    from ftcli.modeling.load import _source_kwargs
    from ftcli.recipe import ModelSection

    result = run_cli("finetune", str(tiny_recipe(workdir, tiny_llama)))
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((workdir / "runs" / "safe" / "recipe.yaml").read_text())
    assert saved["model"]["trust_remote_code"] is False
    assert saved["model"]["allow_pickle_weights"] is False

    assert _source_kwargs(ModelSection(name_or_path="m"))["trust_remote_code"] is False
    assert _source_kwargs(ModelSection(name_or_path="m"))["use_safetensors"] is True
    assert _source_kwargs(ModelSection(name_or_path="m", trust_remote_code=True))["trust_remote_code"] is True
    parsed = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "t"}})
    assert _source_kwargs(parsed.model)["trust_remote_code"] is False

    # And the loaders really pass it on to from_pretrained.
    import transformers

    from ftcli.modeling.load import load_model, load_tokenizer

    seen = []

    def fake(name, **kwargs):
        seen.append(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    for loader in (lambda s: load_model("causal-lm", s), load_tokenizer):
        for trust in (False, True):
            with pytest.raises(ModelError):
                loader(ModelSection(name_or_path=str(tiny_llama), trust_remote_code=trust))
            assert seen[-1]["trust_remote_code"] is trust


# --------------------------------------------------------------------------------------------------
# 5. Tokens never end up in a run or in the output.
# --------------------------------------------------------------------------------------------------

SECRET = "hf_SECRETtoken123"


def test_hub_token_never_reaches_the_run_or_the_output(workdir, tiny_llama, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", SECRET)
    recipe = tiny_recipe(workdir, tiny_llama, save_steps=1)  # checkpoints (training_args.bin) too
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == 0, result.output
    run = workdir / "runs" / "safe"
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files)  # the riskiest file was written and checked
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert SECRET not in result.output and SECRET not in result.stdout


# --------------------------------------------------------------------------------------------------
# 6. A non-finite loss stops training (or skips the batch) and never saves a model.
# --------------------------------------------------------------------------------------------------

def _nan_trainer(tiny_llama: Path, tmp_path: Path, policy: str):
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from ftcli.training.trainer import FtcliTrainer
    from ftcli.data.collators import PadCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.lm_head.register_forward_hook(lambda module, args, out: torch.full_like(out, float("nan")))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    trainer = FtcliTrainer(model=model, args=args, on_nonfinite_loss=policy)
    model.train()
    pad = model.config.pad_token_id
    batch = PadCollator(pad)([{"input_ids": [5, 6, 7, 8], "labels": [-100, 6, 7, 8]},
                              {"input_ids": [9, 10], "labels": [-100, 10]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    return trainer, model, batch


def test_nonfinite_loss_stop_raises_naming_the_step(tiny_llama, tmp_path):
    trainer, model, batch = _nan_trainer(tiny_llama, tmp_path, "stop")
    trainer.state.global_step = 6
    with pytest.raises(TrainingFailed, match=r"non-finite loss .*at step 7"):
        trainer.compute_loss(model, batch)
    assert trainer.skipped_batches == 0


def test_nonfinite_loss_skip_returns_a_harmless_zero(tiny_llama, tmp_path):
    import torch

    trainer, model, batch = _nan_trainer(tiny_llama, tmp_path, "skip")
    loss = trainer.compute_loss(model, batch)
    assert torch.isfinite(loss) and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in trainable:
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and not param.grad.any(), name
    assert trainer.skipped_batches == 1


def test_finite_loss_is_left_alone(tiny_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from ftcli.training.trainer import FtcliTrainer
    from ftcli.data.collators import PadCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    trainer = FtcliTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[],
                                                               use_cpu=True), on_nonfinite_loss="stop")
    model.train()
    loss = trainer.compute_loss(model, PadCollator(0)([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}]))
    assert torch.isfinite(loss) and loss.item() > 0 and trainer.skipped_batches == 0


def test_diverging_finetune_exits_3_without_saving_a_model(workdir, tiny_llama):
    # lr 1e10 (with clipping off) overflows the weights in one step: the loss is NaN at step 2 for every
    # seed tried; 1e6 does not diverge (the tiny model saturates at a finite, uniform loss).
    recipe = tiny_recipe(workdir, tiny_llama, max_steps=4)
    result = run_cli("finetune", str(recipe), "--set", "train.learning_rate=1e10",
                     "--set", "train.max_grad_norm=1e9")
    assert result.exit_code == 3, result.output
    assert "non-finite" in result.output
    assert "internal error" not in result.output
    run = workdir / "runs" / "safe"
    assert not (run / "model").exists() and not (run / "train_results.json").exists()



POISON = 250  # a token id (no other row has it) whose embedding this test turns into NaN


class _StepRecorder:
    """Weights, optimizer state and learning rate at the start and end of every optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        records = self.records = {}

        def snapshot(model, optimizer, lr_scheduler) -> dict:
            import copy

            return {"params": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                    "lr": [g["lr"] for g in optimizer.param_groups],
                    "schedule": lr_scheduler.state_dict()["last_epoch"]}

        class Recorder(TrainerCallback):
            def on_step_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kw):
                records[state.global_step + 1] = {"before": snapshot(model, optimizer, lr_scheduler)}

            def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kw):
                records[state.global_step]["after"] = snapshot(model, optimizer, lr_scheduler)

        self.callback = Recorder()


def _same(a, b) -> bool:
    """Exactly equal, tensors and nested containers alike."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_skip_leaves_weights_optimizer_and_learning_rate_exactly_as_they_were(tiny_llama, tmp_path):
    """With gradient accumulation 2, one micro-batch of step 2 has a NaN loss: the whole of step 2 is
    skipped (AdamW's moments, step count and weight decay, and the LR schedule included), the steps
    around it train."""
    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    from ftcli.data.collators import PadCollator
    from ftcli.training.trainer import FtcliTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    embeddings = model.get_input_embeddings()
    embeddings.register_forward_hook(
        lambda module, args, out: out * float("nan") if (args[0] == POISON).any() else None)
    rows = [{"input_ids": [5 + i, 6 + i, 7 + i, 8], "labels": [-100, 6 + i, 7 + i, 8]} for i in range(16)]
    rows[6]["input_ids"][1] = POISON  # step 2 = rows 4-7, its second micro-batch = rows 6-7
    recorder = _StepRecorder()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, max_steps=4,
                             per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=1e-2,
                             weight_decay=0.1, train_sampling_strategy="sequential",
                             save_strategy="no", logging_steps=1)
    trainer = FtcliTrainer(model=model, args=args, train_dataset=rows, data_collator=PadCollator(0),
                           callbacks=[recorder.callback], on_nonfinite_loss="skip", causal_lm=True)
    trainer.train()

    steps = recorder.records
    assert sorted(steps) == [1, 2, 3, 4]
    skipped = steps[2]
    assert _same(skipped["before"]["params"], skipped["after"]["params"])
    assert _same(skipped["before"]["optimizer"], skipped["after"]["optimizer"])
    assert skipped["before"]["lr"] == skipped["after"]["lr"]
    assert skipped["before"]["schedule"] == skipped["after"]["schedule"]
    for step in (1, 3, 4):  # the others do train, and move the schedule on
        assert not _same(steps[step]["before"]["params"], steps[step]["after"]["params"]), step
        assert steps[step]["after"]["schedule"] == steps[step]["before"]["schedule"] + 1, step
    # The schedule (linear decay) stands still for step 2: step 3 trains at the rate step 2 would have.
    assert steps[1]["before"]["lr"] != steps[1]["after"]["lr"] == steps[3]["before"]["lr"]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.skipped_batches == 1 and trainer.skip_steps.skipped_steps == 1
