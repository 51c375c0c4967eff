"""The recipe schema: defaults, strictness (unknown keys, types, ranges, non-finite numbers),
all problems at once, YAML errors, --set overrides, path resolution and round-tripping."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from conftest import recipe_problems
from ftcli.errors import RecipeError, UserError
from ftcli.recipe import Recipe, apply_overrides, dump_recipe, load_recipe, parse_recipe, read_yaml, resolve_paths, save_recipe

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {"task": "causal-lm", "model": {"name_or_path": "some-model"}, "data": {"train": "train.jsonl"}}


def raw(**sections) -> dict:
    """MINIMAL with sections merged in: raw(train={"batch_size": 4}, task="sequence-classification")."""
    out = copy.deepcopy(MINIMAL)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


problems = recipe_problems


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- required keys and defaults


@pytest.mark.parametrize("missing", ["task", "model", "data"])
def test_required_top_level_keys(missing):
    data = raw()
    del data[missing]
    assert problems(data) == [f"{missing}: required key is missing"]


def test_data_train_is_required():
    data = raw()
    data["data"] = {"eval_fraction": 0.2}
    assert problems(data) == ["data.train: required key is missing"]


def test_defaults_match_the_contract():
    r = parse_recipe(raw())
    assert r.data.eval is None
    assert r.data.eval_fraction == 0.1
    assert r.data.max_length == 256
    assert (r.data.text_field, r.data.label_field) == ("text", "label")
    assert (r.data.prompt_field, r.data.response_field) == ("prompt", "response")
    assert r.data.max_train_samples is None
    assert r.train.batch_size == 8
    assert r.train.learning_rate == 2e-4
    assert r.train.output_dir == "runs/demo"
    assert r.train.seed == 42
    assert r.lora is None  # absent → full fine-tune
    assert r.model.gguf_file is None


def test_lora_section_defaults_when_present():
    r = parse_recipe(raw(lora={}))
    assert (r.lora.r, r.lora.alpha, r.lora.dropout, r.lora.target_modules) == (8, 16, 0.05, "all-linear")


@pytest.mark.parametrize("task, expected", [
    ("sequence-classification", ["accuracy", "f1"]),
    ("causal-lm", ["perplexity", "loss"]),
])
def test_default_metrics_depend_on_task(task, expected):
    assert parse_recipe(raw(task=task)).eval.metrics == expected


def test_explicit_metrics_are_kept():
    r = parse_recipe(raw(task="sequence-classification", eval={"metrics": ["recall", "matthews_correlation"]}))
    assert r.eval.metrics == ["recall", "matthews_correlation"]


def test_default_metrics_are_not_shared_between_recipes():
    first = parse_recipe(raw(task="sequence-classification"))
    first.eval.metrics.append("recall")
    assert parse_recipe(raw(task="sequence-classification")).eval.metrics == ["accuracy", "f1"]


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("section, key, expected", [
    (None, "trian", "trian: unknown key — did you mean train?"),
    ("model", "name_or_pth", "model.name_or_pth: unknown key — did you mean name_or_path?"),
    ("data", "eval_fractoin", "data.eval_fractoin: unknown key — did you mean eval_fraction?"),
    ("data", "max_lenght", "data.max_lenght: unknown key — did you mean max_length?"),
    ("lora", "alpah", "lora.alpah: unknown key — did you mean alpha?"),
    ("train", "batchsize", "train.batchsize: unknown key — did you mean batch_size?"),
    ("train", "learning_rat", "train.learning_rat: unknown key — did you mean learning_rate?"),
    ("eval", "metric", "eval.metric: unknown key — did you mean metrics?"),
    ("generate", "max_new_token", "generate.max_new_token: unknown key — did you mean max_new_tokens?"),
])
def test_unknown_key_at_every_depth_suggests_the_closest(section, key, expected):
    data = raw(**{key: {}}) if section is None else raw(**{section: {key: 1}})
    assert problems(data) == [expected]


def test_unknown_key_far_from_everything_has_no_suggestion():
    assert problems(raw(train={"zzzzqqq": 1})) == ["train.zzzzqqq: unknown key"]


@pytest.mark.parametrize("key", ["[", "list[str]", "str", "DataSource"])
def test_unknown_key_spelled_like_a_type_tag_is_named(key):
    # pydantic puts union members' types ("list[str]", "DataSource") in error paths; ours must not
    # mistake a user's own key for one (a key "[" once crashed the loader with IndexError).
    assert problems(raw(**{key: None})) == [f"{key}: unknown key"]
    assert problems(raw(train={key: 1})) == [f"train.{key}: unknown key"]


def test_all_problems_reported_at_once():
    data = raw(task="sequence-classification",
               data={"trian": "x.jsonl", "max_length": 0},
               train={"batch_size": -1, "learning_rate": "fast", "lerning_rate": 1},
               lora={"r": 0},
               eval={"metrics": ["acuracy"]})
    found = problems(data)
    text = "\n".join(found)
    assert len(found) == 7, found
    for needle in ("data.trian: unknown key — did you mean train?", "data.max_length:", "train.batch_size:",
                   "train.learning_rate:", "train.lerning_rate: unknown key — did you mean learning_rate?",
                   "lora.r:", "eval.metrics: 'acuracy'"):
        assert needle in text
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, "my.yaml")
    assert str(info.value).startswith("my.yaml: 7 problems in recipe:")


# ---------------------------------------------------------------- types and ranges


@pytest.mark.parametrize("section, key, value", [
    ("train", "batch_size", -1),
    ("train", "batch_size", 0),
    ("train", "batch_size", "abc"),
    ("train", "learning_rate", "fast"),
    ("train", "learning_rate", 0),
    ("train", "epochs", -1),
    ("lora", "r", 0),
    ("lora", "dropout", 1.0),
    ("data", "eval_fraction", 1.0),
    ("data", "eval_fraction", -0.1),
    ("data", "max_length", 0),
    ("data", "max_train_samples", 0),
    ("generate", "top_p", 1.5),
    ("generate", "temperature", -0.5),
    ("train", "report_to", "none"),
    ("eval", "metrics", "accuracy"),
])
def test_wrong_type_or_out_of_range_is_an_error_at_its_path(section, key, value):
    found = problems(raw(**{section: {key: value}}))
    assert found and all(p.startswith(f"{section}.{key}:") for p in found), found


def test_out_of_range_message_shows_the_value():
    (msg,) = problems(raw(train={"batch_size": -3}))
    assert "greater than 0" in msg and "-3" in msg


@pytest.mark.parametrize("section, key", [
    ("train", "learning_rate"), ("train", "epochs"), ("train", "warmup_steps"), ("train", "weight_decay"),
    ("train", "max_grad_norm"), ("data", "eval_fraction"), ("lora", "alpha"), ("lora", "dropout"),
    ("generate", "temperature"), ("generate", "top_p"),
])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected_everywhere(section, key, value):
    found = problems(raw(**{section: {key: value}}))
    assert found and all(p.startswith(f"{section}.{key}:") for p in found), found
    assert any("finite" in p for p in found), found


def test_nan_and_inf_from_yaml_file(tmp_path):
    path = write(tmp_path / "r.yaml", "task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: t.jsonl}\n"
                                      "train: {learning_rate: .nan}\nlora: {alpha: .inf}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert sorted(p.split(":")[0] for p in info.value.problems) == ["lora.alpha", "train.learning_rate"]


def test_unsupported_task():
    (msg,) = problems(raw(task="classification"))
    assert msg.startswith("task:") and "causal-lm" in msg and "sequence-classification" in msg


@pytest.mark.parametrize("value, kind", [([1, 2], "a list"), (3, "a number"), ("hello", "a string"), (None, "empty")])
def test_top_level_must_be_a_mapping(value, kind):
    (msg,) = problems(value)
    assert msg.startswith("(recipe): the top level must be a mapping")
    assert msg.endswith(kind)


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("42\n", "a number"), ("", "empty"),
                                        ("# only a comment\n", "empty")])
def test_top_level_shape_from_file(tmp_path, text, kind):
    path = write(tmp_path / "r.yaml", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.problems[0].endswith(kind)
    # the shape error wins over overrides too (they cannot be applied to a non-mapping)
    with pytest.raises(RecipeError):
        load_recipe(path, ["train.batch_size=2"])


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path / "r.yaml", "task: causal-lm\nmodel:\n  name_or_path: x\n data: [\n")
    with pytest.raises(UserError) as info:
        read_yaml(path)
    assert not isinstance(info.value, RecipeError)
    assert "YAML syntax error at line 4, column 2" in info.value.message
    assert str(path) in info.value.message


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_non_utf8_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"task: causal-lm\n# caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_yaml(path)


# ---------------------------------------------------------------- metrics per task


def test_metric_of_other_task_is_an_error():
    (msg,) = problems(raw(task="causal-lm", eval={"metrics": ["accuracy"]}))
    assert msg.startswith("eval.metrics: 'accuracy' is not a causal-lm metric")
    assert "perplexity, loss" in msg


def test_misspelled_metric_suggests_the_closest():
    found = problems(raw(task="sequence-classification", eval={"metrics": ["accuracy", "acuracy", "preplexity"]}))
    assert len(found) == 2
    assert "'acuracy'" in found[0] and "did you mean accuracy?" in found[0]
    assert "'preplexity'" in found[1]


# ---------------------------------------------------------------- --set overrides


def test_apply_overrides_creates_nested_sections():
    out = apply_overrides(raw(), ["train.batch_size=4", "lora.r=2", "task=sequence-classification"])
    assert out["train"] == {"batch_size": 4}
    assert out["lora"] == {"r": 2}
    assert out["task"] == "sequence-classification"


def test_set_learning_rate_becomes_float(tmp_path):
    path = write(tmp_path / "r.yaml", yaml.safe_dump(raw()))
    r = load_recipe(path, ["train.learning_rate=1e-4"])
    assert isinstance(r.train.learning_rate, float)
    assert r.train.learning_rate == pytest.approx(1e-4)


def test_set_overrides_file_values_and_later_wins(tmp_path):
    path = write(tmp_path / "r.yaml", yaml.safe_dump(raw(train={"batch_size": 16})))
    r = load_recipe(path, ["train.batch_size=4", "train.batch_size=2", "data.max_length=32"])
    assert (r.train.batch_size, r.data.max_length) == (2, 32)


def test_set_is_type_checked(tmp_path):
    path = write(tmp_path / "r.yaml", yaml.safe_dump(raw()))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["train.batch_size=abc"])
    (msg,) = info.value.problems
    assert msg.startswith("train.batch_size:") and "'abc'" in msg


def test_set_unknown_key_suggests(tmp_path):
    path = write(tmp_path / "r.yaml", yaml.safe_dump(raw()))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["train.batchsize=2"])
    assert info.value.problems == ["train.batchsize: unknown key — did you mean batch_size?"]


@pytest.mark.parametrize("item", ["foo", "=3", " =3", "train.batch_size"])
def test_malformed_set_is_an_error(item):
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_overrides(raw(), [item])


def test_set_into_a_scalar_is_an_error():
    with pytest.raises(UserError, match="'task' is not a section"):
        apply_overrides(raw(), ["task.x=1"])


# ---------------------------------------------------------------- paths


def test_relative_paths_resolve_against_cwd(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = write(tmp_path / "r.yaml", yaml.safe_dump(raw(
        model={"name_or_path": "models/mine"},
        data={"train": "data/train.jsonl", "eval": "../elsewhere/eval.jsonl"},
        train={"output_dir": "out"})))
    r = load_recipe(path)
    assert r.data.train == str(tmp_path / "data" / "train.jsonl")
    assert r.data.eval == str((tmp_path.parent / "elsewhere" / "eval.jsonl").resolve())
    assert r.train.output_dir == str(tmp_path / "out")
    assert r.model.name_or_path == str(tmp_path / "models" / "mine")  # exists here → a local path
    for value in (r.data.train, r.data.eval, r.train.output_dir, r.model.name_or_path):
        assert Path(value).is_absolute()


def test_default_output_dir_resolves_against_cwd(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    r = load_recipe(write(tmp_path / "r.yaml", yaml.safe_dump(raw())))
    assert r.train.output_dir == str(tmp_path / "runs" / "demo")


def test_hub_ids_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = resolve_paths(parse_recipe(raw(model={"name_or_path": "HuggingFaceTB/SmolLM2-135M"},
                                       data={"train": "stanfordnlp/imdb"})))
    assert r.model.name_or_path == "HuggingFaceTB/SmolLM2-135M"
    assert r.data.train == "stanfordnlp/imdb"


def test_absolute_paths_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "x" / "t.jsonl"
    r = resolve_paths(parse_recipe(raw(data={"train": str(target)})), base=tmp_path / "other")
    assert r.data.train == str(target)


def fake_run(folder: Path, finished: bool = True) -> Path:
    """A run directory as ftcli leaves it: model/ and train_results.json once finished."""
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "recipe.yaml").write_text("task: causal-lm\n")
    if finished:
        (folder / "model").mkdir()
        (folder / "model" / "config.json").write_text("{}")
        (folder / "train_results.json").write_text("{}")
    return folder


def test_a_finished_run_as_model_or_tokenizer_means_its_model_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "pretrain")
    r = resolve_paths(parse_recipe(raw(model={"name_or_path": "runs/pretrain"},
                                       tokenizer={"name_or_path": str(tmp_path / "runs" / "pretrain")})))
    # The saved recipe then names the exact folder the weights came from.
    assert r.model.name_or_path == r.tokenizer.name_or_path == str(tmp_path / "runs" / "pretrain" / "model")
    # A run's model/ itself, and a run that has not finished, are left as written.
    fake_run(tmp_path / "runs" / "half", finished=False)
    for name in ("runs/pretrain/model", "runs/half"):
        assert resolve_paths(parse_recipe(raw(model={"name_or_path": name}))).model.name_or_path \
            == str(tmp_path / name)


# ---------------------------------------------------------------- round trip


def test_dump_then_load_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = load_recipe(write(tmp_path / "r.yaml", yaml.safe_dump(raw(
        task="sequence-classification",
        data={"eval_fraction": 0.25, "max_train_samples": 50},
        lora={"r": 4, "target_modules": ["q_proj", "v_proj"]},
        train={"learning_rate": 3e-5, "max_steps": 7, "report_to": ["none"]},
        eval={"metrics": ["f1", "recall"]},
        generate={"system_prompt": "Talk like a pirate: arr.", "temperature": 0.7}))))
    assert parse_recipe(yaml.safe_load(dump_recipe(original))) == original
    # a saved (resolved) recipe loads to the same model from any other directory
    save_recipe(original, tmp_path / "saved.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    reloaded = load_recipe(tmp_path / "saved.yaml")
    assert reloaded == original
    assert reloaded.lora.target_modules == ["q_proj", "v_proj"]
    assert reloaded.eval.metrics == ["f1", "recall"]


def test_dump_differs_when_recipe_differs():
    a = parse_recipe(raw())
    b = parse_recipe(raw(train={"batch_size": 3}))
    assert dump_recipe(a) != dump_recipe(b)
    assert parse_recipe(yaml.safe_load(dump_recipe(b))) != a


# ---------------------------------------------------------------- the repo's own recipes

RECIPE_FILES = sorted((REPO / "recipes").rglob("*.yaml")) + sorted((REPO / "recipes").rglob("*.yml"))


def test_repo_has_recipes():
    assert len(RECIPE_FILES) >= 4, RECIPE_FILES


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_repo_recipe_validates(path):
    recipe = parse_recipe(read_yaml(path), str(path))
    assert isinstance(recipe, Recipe)


# ---------------------------------------------------------------- stricter than YAML and pydantic


@pytest.mark.parametrize("key, section", [("batch_size", "train"), ("learning_rate", "train"),
                                          ("max_length", "data"), ("r", "lora")])
def test_a_boolean_is_not_a_number(key, section):
    recipe = raw()
    recipe.setdefault(section, {})[key] = True
    (msg,) = problems(recipe)
    assert msg.startswith(f"{section}.{key}:") and "boolean" in msg


def test_a_key_given_twice_is_an_error(tmp_path):
    path = write(tmp_path / "r.yaml", "task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: a.jsonl}\n"
                                      "train: {epochs: 2}\ntrain: {batch_size: 4}\n")
    with pytest.raises(UserError, match=r"duplicate key 'train' \(first at line 4\)"):
        load_recipe(path)


def test_set_keeps_a_string_with_a_colon(tmp_path):
    path = write(tmp_path / "r.yaml", "task: causal-lm\nmodel: {name_or_path: m}\ndata: {train: a.jsonl}\n")
    recipe = load_recipe(path, ["generate.system_prompt=Note: be brief", "lora.target_modules=[q_proj, v_proj]"])
    assert recipe.generate.system_prompt == "Note: be brief"
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]


def test_a_key_that_starts_a_valid_key_is_suggested():
    recipe = raw()
    recipe["model"] = {"name": "x"}
    (msg,) = problems(recipe)
    assert msg == "model.name: unknown key — did you mean name_or_path?"


def test_readme_recipe_reference_is_the_schema():
    """The README's recipe block is `ftcli schema` verbatim: docs come from the schema."""
    from ftcli.recipe import reference_yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"```yaml\n{reference_yaml()}```" in readme
    parsed = yaml.safe_load(reference_yaml().replace("REQUIRED", "data/train.jsonl"))
    assert parse_recipe(parsed).data.train == "data/train.jsonl"  # the reference is itself a valid recipe


@pytest.mark.parametrize("key", ["train", "eval"])
def test_an_empty_list_of_data_sources_is_an_error_not_a_run_without_data(key):
    recipe = raw()
    recipe["data"][key] = []
    (msg,) = problems(recipe)
    assert msg.startswith(f"data.{key}: an empty list names no data")
