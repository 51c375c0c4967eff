"""Data sources: local paths, hub datasets (faked: tests are offline), parallel text, mixing by
weight, and the names and fingerprints reports use."""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import shared_data, write_jsonl
from ftcli.data.sources import describe_source, source_fingerprint
from ftcli.data.splits import load_splits
from ftcli.errors import DataError
from ftcli.recipe import DataSource, load_recipe, parse_recipe
from ftcli.data.sources import mix, read_parallel


def recipe(train, task: str = "causal-lm", seed: int = 42, **data):
    return parse_recipe({"task": task, "model": {"name_or_path": "m"}, "train": {"seed": seed},
                         "data": {"train": train, **data}})


def numbered(path: Path, n: int, tag: str = "row") -> Path:
    return write_jsonl(path, [{"text": f"{tag} {i}", "src": tag} for i in range(n)])


def write_lines(path: Path, lines: list[str]) -> Path:
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


# ---------------------------------------------------------------- path sources


def test_a_path_mapping_reads_like_a_plain_path(tmp_path):
    path = numbered(tmp_path / "t.jsonl", 5)
    as_string = load_splits(recipe(str(path), eval_fraction=0))
    as_mapping = load_splits(recipe({"path": str(path)}, eval_fraction=0))
    assert as_mapping.train == as_string.train == [{"text": f"row {i}", "src": "row"} for i in range(5)]
    assert as_mapping.format == "text"


def test_a_missing_path_in_a_mapping_is_named(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nope.jsonl"):
        load_splits(recipe({"path": str(tmp_path / "nope.jsonl")}))


def test_recipe_file_with_a_list_resolves_paths_and_loads(workdir):
    numbered(workdir / "data" / "a.jsonl", 4, "a")
    numbered(workdir / "data" / "b.jsonl", 2, "b")
    (workdir / "r.yaml").write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": "m"},
        "data": {"train": ["data/a.jsonl", {"path": "data/b.jsonl", "weight": 2}], "eval_fraction": 0}}))
    r = load_recipe(workdir / "r.yaml")
    assert r.data.train[0] == str(workdir / "data" / "a.jsonl")
    assert r.data.train[1].path == str(workdir / "data" / "b.jsonl")
    splits = load_splits(r)
    assert Counter(row["src"] for row in splits.train) == {"a": 4, "b": 4}


# ---------------------------------------------------------------- hub sources (datasets.load_dataset faked)


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace datasets.load_dataset; record each call's arguments."""
    import datasets

    calls = []

    def load_dataset(name, config=None, *, split=None, revision=None):
        calls.append((name, config, split, revision))
        if name == "offline/missing":
            raise ConnectionError("Couldn't reach 'offline/missing' on the Hub (LocalEntryNotFoundError)\nmore")
        return [{"text": f"{name} {config} {split} {i}"} for i in range(3)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_mapping_passes_config_split_and_revision(fake_hub):
    source = {"name": "org/corpus", "config": "en", "split": "validation", "revision": "v1.0"}
    splits = load_splits(recipe(source, eval_fraction=0))
    assert fake_hub == [("org/corpus", "en", "validation", "v1.0")]
    assert [r["text"] for r in splits.train] == [f"org/corpus en validation {i}" for i in range(3)]


def test_a_plain_hub_id_reads_its_train_split(fake_hub):
    load_splits(recipe("org/corpus", eval_fraction=0))
    assert fake_hub == [("org/corpus", None, "train", None)]


def test_hub_failure_is_a_clear_data_error(fake_hub):
    with pytest.raises(DataError) as info:
        load_splits(recipe({"name": "offline/missing"}))
    message = info.value.message
    assert "offline/missing" in message and "ConnectionError" in message and "more" not in message
    assert "local file" in info.value.hint


def test_the_real_loader_fails_fast_offline():
    # conftest sets HF_DATASETS_OFFLINE: the genuine datasets call must fail, as our DataError.
    with pytest.raises(DataError, match="could not be loaded as a hub dataset"):
        load_splits(recipe({"name": "surely-not-cached/ftcli-test-dataset", "config": "x"}))


# ---------------------------------------------------------------- parallel text


def test_parallel_files_become_prompt_response_rows(tmp_path):
    src = write_lines(tmp_path / "train.en.gz", ["A dog runs.", "Two cats.", "", "A bird."])
    tgt = write_lines(tmp_path / "train.de", ["Ein Hund rennt.", "Zwei Katzen.", "Leer.", ""])
    splits = load_splits(recipe({"source": str(src), "target": str(tgt)}, eval_fraction=0))
    assert splits.format == "prompt_response"
    assert splits.train == [{"prompt": "A dog runs.", "response": "Ein Hund rennt."},
                            {"prompt": "Two cats.", "response": "Zwei Katzen."}]
    assert splits.cleaning["train"]["incomplete"] == 2  # pairs with an empty side, still aligned


def test_parallel_rows_use_the_recipes_field_names_and_seq2seq(tmp_path):
    src = write_lines(tmp_path / "s.txt", ["hello", "thanks"])
    tgt = write_lines(tmp_path / "t.txt", ["hallo", "danke"])
    splits = load_splits(recipe({"source": str(src), "target": str(tgt)}, task="seq2seq", eval_fraction=0,
                                prompt_field="en", response_field="de"))
    assert (splits.mode, splits.format) == ("seq2seq", "seq2seq")
    assert splits.train == [{"en": "hello", "de": "hallo"}, {"en": "thanks", "de": "danke"}]


def test_parallel_line_count_mismatch_names_both_files_and_counts(tmp_path):
    src = write_lines(tmp_path / "a.en.gz", ["one", "two", "three"])
    tgt = write_lines(tmp_path / "a.de.gz", ["eins", "zwei"])
    with pytest.raises(DataError) as info:
        load_splits(recipe({"source": str(src), "target": str(tgt)}))
    message = info.value.message
    assert f"{src} has 3 lines" in message and f"{tgt} has 2" in message


def test_parallel_keeps_alignment_across_a_unicode_line_separator(tmp_path):
    # str.splitlines() would split at U+2028 and shift every later pair by one.
    src = write_lines(tmp_path / "s.txt", ["one\u2028still one", "two"])
    tgt = write_lines(tmp_path / "t.txt", ["eins", "zwei"])
    rows = read_parallel(src, tgt, "p", "r")
    assert [r["r"] for r in rows] == ["eins", "zwei"] and rows[1]["p"] == "two"


def test_multi30k_parallel_files():
    src, tgt = shared_data("multi30k/train.en.gz"), shared_data("multi30k/train.de.gz")
    splits = load_splits(recipe({"source": str(src), "target": str(tgt)}, task="seq2seq", eval_fraction=0.01))
    assert 28_000 < len(splits.train) + len(splits.eval) <= 29_000
    assert len(splits.eval) == round(29_000 * 0.01)
    assert splits.sources[0]["rows_read"] == 29_000
    first = next(r for r in splits.train if r["prompt"].startswith("Two young, White males"))
    assert first["response"].startswith("Zwei junge weiße Männer")


# ---------------------------------------------------------------- mixing


def mixed(tmp_path, weights: list[float], seed: int = 42, sizes=(10, 10)):
    sources = [{"path": str(numbered(tmp_path / f"{tag}.jsonl", n, tag)), "weight": w}
               for tag, n, w in zip("ab", sizes, weights)]
    return load_splits(recipe(sources, seed=seed, eval_fraction=0))


def test_weight_two_uses_every_row_twice(tmp_path):
    splits = mixed(tmp_path, [2, 1])
    counts = Counter(r["text"] for r in splits.train)
    assert all(counts[f"a {i}"] == 2 and counts[f"b {i}"] == 1 for i in range(10))
    assert len(splits.train) == 30


def test_weight_half_uses_a_seeded_half(tmp_path):
    splits = mixed(tmp_path, [0.5, 1])
    a_rows = [r["text"] for r in splits.train if r["src"] == "a"]
    assert len(a_rows) == 5 and len(set(a_rows)) == 5
    assert a_rows != [f"a {i}" for i in range(5)]  # sampled, not the head
    again = [r["text"] for r in mixed(tmp_path, [0.5, 1]).train if r["src"] == "a"]
    assert again == a_rows


def test_weight_one_and_a_half_is_every_row_once_plus_half_again(tmp_path):
    splits = mixed(tmp_path, [1.5, 1])
    counts = Counter(r["text"] for r in splits.train if r["src"] == "a")
    assert set(counts) == {f"a {i}" for i in range(10)}
    assert sorted(counts.values()) == [1] * 5 + [2] * 5


def test_mix_is_shuffled_and_seeded(tmp_path):
    first = [r["text"] for r in mixed(tmp_path, [1, 1]).train]
    assert first == [r["text"] for r in mixed(tmp_path, [1, 1]).train]
    assert first != [r["text"] for r in mixed(tmp_path, [1, 1], seed=7).train]
    assert sorted(first) == sorted([f"a {i}" for i in range(10)] + [f"b {i}" for i in range(10)])
    # interleaved, not all of a then all of b
    assert {r.split()[0] for r in first[:10]} == {"a", "b"}


def test_mix_records_rows_read_and_used_per_source(tmp_path):
    splits = mixed(tmp_path, [2, 0.5], sizes=(4, 10))
    assert [(s["source"].endswith(name), s["rows_read"], s["rows_used"], s["weight"])
            for s, name in zip(splits.sources, ["a.jsonl (x2)", "b.jsonl (x0.5)"])] == \
        [(True, 4, 8, 2), (True, 10, 5, 0.5)]


def test_held_out_rows_are_never_also_training_rows_in_a_mix(tmp_path):
    sources = [{"path": str(numbered(tmp_path / "a.jsonl", 20, "a")), "weight": 3},
               {"path": str(numbered(tmp_path / "b.jsonl", 20, "b"))}]
    splits = load_splits(recipe(sources, eval_fraction=0.25))
    held_out = {r["text"] for r in splits.eval}
    assert len(held_out) == len(splits.eval) == 10
    assert not held_out & {r["text"] for r in splits.train}
    assert len(splits.train) == 15 * 3 + 15


def test_mixed_sources_must_share_the_format(tmp_path):
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q", "response": "a"}])
    text = numbered(tmp_path / "text.jsonl", 3)
    with pytest.raises(DataError) as info:
        load_splits(recipe([str(sft), str(text)]))
    assert str(text) in info.value.message and "prompt, response not found" in info.value.message


def test_mix_function_counts_with_uneven_sizes():
    rows, origin = mix([[{"i": i} for i in range(3)], [{"j": j} for j in range(7)]], [2, 0.5], seed=1)
    assert Counter(origin) == {0: 6, 1: 4}  # round(7 * 0.5) = 4
    assert len(rows) == 10


def test_max_train_samples_applies_after_mixing(tmp_path):
    sources = [{"path": str(numbered(tmp_path / f"{t}.jsonl", 10, t)), "weight": 2} for t in "ab"]
    splits = load_splits(recipe(sources, eval_fraction=0, max_train_samples=6))
    assert len(splits.train) == 6 and sum(s["rows_used"] for s in splits.sources) == 6


def test_an_eval_list_reads_every_source(tmp_path):
    train = numbered(tmp_path / "t.jsonl", 5)
    evals = [str(numbered(tmp_path / "e1.jsonl", 2, "e1")), str(numbered(tmp_path / "e2.jsonl", 3, "e2"))]
    splits = load_splits(recipe(str(train), eval=evals))
    assert Counter(r["src"] for r in splits.eval) == {"e1": 2, "e2": 3}
    assert [s["split"] for s in splits.sources] == ["train", "eval", "eval"]


# ---------------------------------------------------------------- describe_source / source_fingerprint


def test_describe_source_forms():
    assert describe_source("/data/t.jsonl") == "/data/t.jsonl"
    assert describe_source(DataSource(name="org/ds", config="en", split="test", revision="main")) == \
        "hub dataset org/ds (en) split test @ main"
    assert describe_source(DataSource(source="/d/a.en.gz", target="/d/a.de.gz", weight=2)) == \
        "/d/a.en.gz + /d/a.de.gz (x2)"
    assert describe_source(["/a.jsonl", DataSource(path="/b.jsonl", weight=0.5)]) == \
        "mix of /a.jsonl, /b.jsonl (x0.5)"


def test_fingerprint_is_the_file_hash_and_follows_its_bytes(tmp_path):
    path = numbered(tmp_path / "t.jsonl", 3)
    assert source_fingerprint(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert source_fingerprint(DataSource(path=str(path))) == source_fingerprint(str(path))
    before = source_fingerprint([str(path), str(path)])
    path.write_text('{"text": "changed"}\n', encoding="utf-8")
    assert source_fingerprint([str(path), str(path)]) != before


def test_fingerprint_covers_folders_and_parallel_files_and_not_the_hub(tmp_path):
    src, tgt = write_lines(tmp_path / "s.txt", ["a"]), write_lines(tmp_path / "t.txt", ["b"])
    pair = source_fingerprint(DataSource(source=str(src), target=str(tgt)))
    assert pair and pair != source_fingerprint(str(src))
    assert source_fingerprint(str(tmp_path)) is not None  # the folder's two .txt files
    assert source_fingerprint(DataSource(name="org/ds")) is None
    assert source_fingerprint([str(src), DataSource(name="org/ds")]) is None
