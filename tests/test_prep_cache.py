"""The tokenized-data cache: a repeat of the same recipe does no re-tokenization, and anything that
changes the token ids (tokenizer, chat template, template, max_length, rows) misses the cache."""

from __future__ import annotations

import pytest

import ftcli.data.prepare
import ftcli.data.splits
import ftcli.data.tokenize
from conftest import repo_rows, write_jsonl
from ftcli.data.splits import load_splits
from ftcli.modeling.load import load_tokenizer
from ftcli.data.cache_store import cache_dir
from ftcli.data.prepare import prepare_splits
from ftcli.recipe import parse_recipe


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of the real tokenizer function (each split of each run is one call)."""
    calls = []
    real = ftcli.data.tokenize.tokenize

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ftcli.data.prepare, "tokenize", counting)
    return calls


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTCLI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _prepare(model, data, **data_options):
    recipe = parse_recipe({"task": "causal-lm", "model": {"name_or_path": str(model)},
                           "data": {"train": str(data), "max_length": 64, **data_options}})
    splits = load_splits(recipe)
    return prepare_splits(recipe, splits, load_tokenizer(recipe.model), None)


def _sft_data(workdir, n=40):
    return write_jsonl(workdir / "train.jsonl", repo_rows("pirate", n))


def test_second_run_reuses_the_tokenized_examples(workdir, tiny_llama, fresh_cache, counted):
    data = _sft_data(workdir)
    first_train, first_eval = _prepare(tiny_llama, data)
    assert len(counted) == 2  # train and eval split
    assert len(list(cache_dir().glob("*.npz"))) == 2

    second_train, second_eval = _prepare(tiny_llama, data)
    assert len(counted) == 2, "the second run tokenized again"
    assert second_train.examples == first_train.examples and second_eval.examples == first_eval.examples
    assert (second_train.truncated, second_train.dropped) == (first_train.truncated, first_train.dropped)


@pytest.mark.parametrize("change", ["template", "max_length", "train_on_prompt", "rows"])
def test_a_change_that_alters_tokens_misses_the_cache(workdir, tiny_llama, fresh_cache, counted, change):
    data = _sft_data(workdir)
    first, _ = _prepare(tiny_llama, data)
    options = {"template": {"template": "plain"}, "max_length": {"max_length": 32},
               "train_on_prompt": {"train_on_prompt": True}, "rows": {}}[change]
    if change == "rows":
        data = write_jsonl(workdir / "train.jsonl", [{**r, "response": r["response"] + "!"}
                                                     for r in repo_rows("pirate", 40)])
    second, _ = _prepare(tiny_llama, data, **options)
    assert len(counted) == 4
    assert second.examples != first.examples


def test_a_changed_tokenizer_misses_the_cache(workdir, tiny_llama, tiny_llama_plain, fresh_cache, counted):
    data = _sft_data(workdir)
    _prepare(tiny_llama, data)
    _prepare(tiny_llama_plain, data)  # same vocabulary size, another chat template and EOS
    assert len(counted) == 4


def test_only_the_chat_template_changed_misses_the_cache(workdir, tiny_llama, fresh_cache, counted, tmp_path):
    """The Axolotl #1265 failure: a tokenizer edited in place must not be served its old examples."""
    data = _sft_data(workdir)
    first, _ = _prepare(tiny_llama, data)
    edited = tmp_path / "edited"
    tokenizer = load_tokenizer(parse_recipe({"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
                                             "data": {"train": str(data)}}).model)
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    tokenizer.save_pretrained(edited)
    for name in ("config.json", "model.safetensors"):
        (edited / name).write_bytes((tiny_llama / name).read_bytes())
    second, _ = _prepare(edited, data)
    assert len(counted) == 4
    assert second.examples != first.examples


@pytest.mark.parametrize("library", ["tokenizers", "transformers", "jinja2"])
def test_another_version_of_a_tokenizing_library_misses_the_cache(workdir, tiny_llama, fresh_cache, counted,
                                                                  monkeypatch, library):
    """The same rows and tokenizer under an upgraded library may tokenize differently: no reuse."""
    import importlib.metadata

    data = _sft_data(workdir)
    _prepare(tiny_llama, data)
    _prepare(tiny_llama, data)
    assert len(counted) == 2  # the same versions reuse the entries
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "999.0" if name == library else real(name))
    _prepare(tiny_llama, data)
    assert len(counted) == 4, f"a new {library} version reused the cached examples"


def test_cache_off_always_tokenizes(workdir, tiny_llama, fresh_cache, counted):
    data = _sft_data(workdir)
    _prepare(tiny_llama, data, cache=False)
    _prepare(tiny_llama, data, cache=False)
    assert len(counted) == 4 and not fresh_cache.exists()


def test_a_damaged_entry_is_rebuilt(workdir, tiny_llama, fresh_cache, counted):
    data = _sft_data(workdir)
    first, _ = _prepare(tiny_llama, data)
    for entry in cache_dir().glob("*.npz"):
        entry.write_bytes(b"not a numpy file")
    second, _ = _prepare(tiny_llama, data)
    assert len(counted) == 4 and second.examples == first.examples
    third, _ = _prepare(tiny_llama, data)  # the rebuilt entry is good again
    assert len(counted) == 4 and third.examples == first.examples


def test_classification_labels_survive_the_cache(workdir, tiny_bert, fresh_cache, counted):
    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 30))
    recipe = parse_recipe({"task": "sequence-classification", "model": {"name_or_path": str(tiny_bert)},
                           "data": {"train": str(data)}})
    splits = load_splits(recipe)
    tokenizer = load_tokenizer(recipe.model)
    label2id = ftcli.data.tokenize.label_mapping(splits.train, "label")
    first, _ = prepare_splits(recipe, splits, tokenizer, label2id)
    second, _ = prepare_splits(recipe, splits, tokenizer, label2id)
    assert len(counted) == 2
    assert second.examples == first.examples
    assert all(isinstance(e["labels"], int) for e in second.examples)


def test_masked_lm_examples_survive_the_cache(workdir, tiny_bert, fresh_cache, counted):
    """Training examples carry no labels (the collator masks them), eval ones their fixed masks."""
    from ftcli.data.tokenize import IGNORE_INDEX

    data = write_jsonl(workdir / "reviews.jsonl", repo_rows("reviews", 30))
    recipe = parse_recipe({"task": "masked-lm", "model": {"name_or_path": str(tiny_bert)},
                           "data": {"train": str(data), "eval_fraction": 0.3}})
    splits = load_splits(recipe)
    tokenizer = load_tokenizer(recipe.model)
    first = prepare_splits(recipe, splits, tokenizer, None)
    second = prepare_splits(recipe, splits, tokenizer, None)
    assert len(counted) == 2, "the second preparation tokenized again"
    (train, ev), (cached_train, cached_eval) = first, second
    assert cached_train.examples == train.examples and cached_eval.examples == ev.examples
    assert all(set(e) == {"input_ids"} for e in cached_train.examples)
    assert all(IGNORE_INDEX in e["labels"] and len(e["labels"]) == len(e["input_ids"]) for e in cached_eval.examples)


def test_a_second_finetune_of_the_same_recipe_does_not_tokenize(workdir, tiny_llama, fresh_cache, counted):
    import ftcli

    data = _sft_data(workdir, 24)
    raw = {"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
           "data": {"train": str(data), "max_length": 64},
           "train": {"output_dir": str(workdir / "runs" / "a"), "max_steps": 2, "batch_size": 4}}
    ftcli.finetune(parse_recipe(raw))
    assert len(counted) == 2
    raw["train"]["output_dir"] = str(workdir / "runs" / "b")
    run = ftcli.finetune(parse_recipe(raw))
    assert len(counted) == 2, "the second run tokenized again"
    assert (run / "model" / "config.json").is_file()


# ------------------------------------------------------------------ rows cached by file content

def _recipe(data, **data_options):
    return parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                         "data": {"train": str(data), "max_length": 64, **data_options}})


def test_unchanged_files_give_the_cached_rows_without_reading(workdir, fresh_cache, monkeypatch):
    from dataclasses import asdict

    from ftcli.data.rows_cache import load_splits_cached

    data = _sft_data(workdir)
    first = load_splits_cached(_recipe(data, min_chars=5))
    plain = load_splits(_recipe(data, min_chars=5))
    assert first.fingerprint and plain.fingerprint is None

    def no_reading(*args, **kwargs):
        raise AssertionError("read the files again")

    monkeypatch.setattr(ftcli.data.splits, "read_source", no_reading)
    messages = []
    second = load_splits_cached(_recipe(data, min_chars=5), messages.append)
    assert asdict(second) == asdict(first) == asdict(plain) | {"fingerprint": first.fingerprint}
    assert "reused them" in messages[0]


@pytest.mark.parametrize("change", ["file bytes", "setting", "seed"])
def test_changed_files_or_settings_read_again(workdir, fresh_cache, change):
    from ftcli.data.rows_cache import rows_key

    data = _sft_data(workdir)
    before = rows_key(_recipe(data))
    if change == "file bytes":
        data.write_text(data.read_text(encoding="utf-8").replace("matey", "mate", 1), encoding="utf-8")
        after = rows_key(_recipe(data))
    elif change == "setting":
        after = rows_key(_recipe(data, eval_fraction=0.2))
    else:
        recipe = _recipe(data)
        recipe.train.seed = 7
        after = rows_key(recipe)
    assert before and after and after != before


def test_hub_streamed_or_uncached_data_is_not_keyed(workdir, fresh_cache):
    from ftcli.data.rows_cache import rows_key

    data = _sft_data(workdir)
    assert rows_key(_recipe("some-user/some-dataset")) is None
    assert rows_key(_recipe(data, cache=False)) is None
    streamed = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                             "data": {"train": str(data), "streaming": True}, "train": {"max_steps": 2}})
    assert rows_key(streamed) is None


def test_a_damaged_rows_entry_is_read_again(workdir, fresh_cache):
    from ftcli.data.rows_cache import load_splits_cached

    data = _sft_data(workdir)
    first = load_splits_cached(_recipe(data))
    (entry,) = cache_dir().glob("rows-*.json")
    entry.write_text("{not json", encoding="utf-8")
    messages = []
    again = load_splits_cached(_recipe(data), messages.append)
    assert again.train == first.train and "damaged" in messages[0]
