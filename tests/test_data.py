"""Reading data files, choosing the run mode, splitting, and turning rows into padded token batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcli.data.splits import load_splits
from ftcli.data.sources import read_rows
from ftcli.errors import DataError
from ftcli.data.tokenize import IGNORE_INDEX, label_mapping, tokenize_classification, tokenize_sft, tokenize_text
from ftcli.data.collators import PadCollator
from ftcli.recipe import parse_recipe

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"},
        {"text": "it was \"fine\"", "label": "pos"}]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe(train: Path | str, task: str = "causal-lm", **data):
    return parse_recipe({"task": task, "model": {"name_or_path": "m"},
                         "data": {"train": str(train), **data}})


# ---------------------------------------------------------------- read_rows: formats


def test_read_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n   \n{"a": 2, "b": null}\n', encoding="utf-8")
    assert read_rows(str(path)) == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]


def test_read_jsonl_with_bom(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\n')
    assert read_rows(str(path)) == [{"a": 1}]


def test_read_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    assert read_rows(str(path)) == ROWS


def test_read_csv_handles_quoted_commas(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"a, b",1\nplain,0\n', encoding="utf-8")
    assert read_rows(str(path)) == [{"text": "a, b", "label": "1"}, {"text": "plain", "label": "0"}]


def test_read_tsv_keeps_raw_quotes(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('text\tlabel\nhe said "hi" twice\t1\n"quoted start\t0\n', encoding="utf-8")
    assert read_rows(str(path)) == [{"text": 'he said "hi" twice', "label": "1"},
                                    {"text": '"quoted start', "label": "0"}]


def test_read_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [0, 1, 1]}), path)
    assert read_rows(str(path)) == [{"text": "a", "label": 0}, {"text": "b", "label": 1},
                                    {"text": "c", "label": 1}]


def test_extension_is_case_insensitive(tmp_path):
    path = write_jsonl(tmp_path / "D.JSONL", [{"a": 1}])
    assert read_rows(str(path)) == [{"a": 1}]


# ---------------------------------------------------------------- read_rows: errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_rows(str(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.tsv"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("" if name != "e.json" else "[]", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        read_rows(str(path))


def test_header_only_csv_has_no_rows(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows"):
        read_rows(str(path))


@pytest.mark.parametrize("name, shown", [("d.docx", "'.docx'"), ("d.xlsx", "'.xlsx'"), ("noext", "(none)"),
                                         ("d.xlsx.gz", "'.xlsx'")])
def test_unsupported_extension(tmp_path, name, shown):
    path = tmp_path / name
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_rows(str(path))
    assert "unsupported file type" in info.value.message and shown in info.value.message
    assert ".jsonl" in info.value.hint


def test_a_folder_without_data_files_is_an_error(tmp_path):
    (tmp_path / "notes.md").write_text("# not data\n", encoding="utf-8")
    with pytest.raises(DataError, match="is a folder with no data files"):
        read_rows(str(tmp_path))


def test_a_folder_reads_every_data_file_in_sorted_order(tmp_path):
    import gzip

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.jsonl.gz").write_bytes(gzip.compress(b'{"text": "third"}\n'))
    (tmp_path / "a.txt").write_text("first\nsecond\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("ignored\n", encoding="utf-8")
    (tmp_path / ".hidden.jsonl").write_text('{"text": "ignored"}\n', encoding="utf-8")
    assert [r["text"] for r in read_rows(str(tmp_path))] == ["first", "second", "third"]


def test_invalid_json_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_rows(str(path))
    assert "line 4 is not valid JSON" in info.value.message
    assert str(path) in info.value.message


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is a JSON list, expected an object"):
        read_rows(str(path))


def test_invalid_json_file_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"a": 1},\n {"a": }]', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON at line 2"):
        read_rows(str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".json"])
def test_non_utf8_names_the_line(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    path.write_bytes(b'{"a": "x"}\n{"a": "y"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(DataError) as info:
        read_rows(str(path))
    assert "line 3 is not valid UTF-8" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", '[{"a": 1}, "x"]', '"text"'])
def test_json_must_be_a_list_of_objects(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of objects"):
        read_rows(str(path))


def test_csv_row_with_too_many_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n1,2,3\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 3 has more fields than the header"):
        read_rows(str(path))


def test_bad_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot read parquet"):
        read_rows(str(path))


# ---------------------------------------------------------------- load_splits: mode detection


def test_mode_sft_when_prompt_and_response(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": f"a{i}", "text": "t"}
                                               for i in range(10)])
    assert load_splits(recipe(path)).mode == "sft"


def test_mode_text_when_only_text(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}", "prompt": "only a prompt"} for i in range(10)])
    splits = load_splits(recipe(path))
    assert splits.mode == "text"
    assert splits.columns == ["text", "prompt"]


def test_mode_respects_renamed_fields(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"q": f"q{i}", "a": f"a{i}"} for i in range(10)])
    assert load_splits(recipe(path, prompt_field="q", response_field="a")).mode == "sft"
    assert load_splits(recipe(path, text_field="a")).mode == "text"


def test_mode_classification(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"sentence": f"s{i}", "label": i % 2} for i in range(10)])
    splits = load_splits(recipe(path, task="sequence-classification", text_field="sentence"))
    assert splits.mode == "classification"


def test_causal_lm_missing_fields_lists_what_the_data_has(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q", "answer": "a"}] * 3)
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert "the data has: question, answer" in info.value.message
    assert "'prompt'" in info.value.message and "'text'" in info.value.message


def test_classification_missing_fields_lists_what_the_data_has(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"sentence": "s", "label": 1}] * 3)
    with pytest.raises(DataError) as info:
        load_splits(recipe(path, task="sequence-classification"))
    assert "field(s) text not found" in info.value.message
    assert "the data has: sentence, label" in info.value.message


def test_eval_file_missing_fields(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": 1}] * 3)
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "gold": 1}] * 3)
    with pytest.raises(DataError) as info:
        load_splits(recipe(train, task="sequence-classification", eval=str(ev)))
    assert "label not found" in info.value.message and "text, gold" in info.value.message


# ---------------------------------------------------------------- load_splits: dropping incomplete rows


def test_incomplete_rows_are_dropped_and_counted(tmp_path):
    rows = [{"prompt": "q1", "response": "a1"}, {"prompt": None, "response": "a2"},
            {"prompt": "q3", "response": "   "}, {"prompt": "", "response": "a4"},
            {"prompt": "q5"}, {"prompt": "q6", "response": 0}, {"prompt": "q7", "response": "a7"}]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    splits = load_splits(recipe(path, eval_fraction=0))
    assert splits.cleaning["train"]["incomplete"] == 4 and splits.rows_dropped == 4
    assert [r["prompt"] for r in splits.train] == ["q1", "q6", "q7"]  # 0 is a value, not blank
    assert splits.eval == []


def test_incomplete_eval_rows_are_dropped_and_counted(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "b"}])
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "c"}, {"text": None}, {"text": " "}])
    splits = load_splits(recipe(train, eval=str(ev)))
    assert splits.cleaning["train"]["incomplete"] == 0 and splits.cleaning["eval"]["incomplete"] == 2
    assert splits.eval == [{"text": "c"}]


def test_error_when_no_complete_rows_remain(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": None}, {"text": ""}, {"text": "  \n"}])
    with pytest.raises(DataError, match="every row has an empty or null text"):
        load_splits(recipe(path))


# ---------------------------------------------------------------- load_splits: splitting and sampling


def _numbered(tmp_path, n=100) -> Path:
    return write_jsonl(tmp_path / "t.jsonl", [{"text": f"row {i}", "i": i} for i in range(n)])


@pytest.mark.parametrize("n, fraction, expected_eval", [(100, 0.1, 10), (100, 0.25, 25), (7, 0.5, 4),
                                                        (10, 0.01, 1), (2, 0.9, 1)])
def test_eval_fraction_split_size_and_disjoint(tmp_path, n, fraction, expected_eval):
    splits = load_splits(recipe(_numbered(tmp_path, n), eval_fraction=fraction))
    train_ids = [r["i"] for r in splits.train]
    eval_ids = [r["i"] for r in splits.eval]
    assert len(eval_ids) == expected_eval
    assert len(train_ids) == n - expected_eval
    assert not set(train_ids) & set(eval_ids)
    assert sorted(train_ids + eval_ids) == list(range(n))
    assert train_ids == sorted(train_ids) and eval_ids == sorted(eval_ids)  # file order kept


def test_split_is_deterministic_and_seeded(tmp_path):
    path = _numbered(tmp_path)
    first = load_splits(recipe(path, eval_fraction=0.2))
    again = load_splits(recipe(path, eval_fraction=0.2))
    assert first.eval == again.eval and first.train == again.train
    assert first.eval != [{"text": f"row {i}", "i": i} for i in range(20)]  # shuffled, not the head
    other_seed = load_splits(parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                                           "data": {"train": str(path), "eval_fraction": 0.2},
                                           "train": {"seed": 7}}))
    assert other_seed.eval != first.eval


def test_no_split_when_fraction_is_zero(tmp_path):
    splits = load_splits(recipe(_numbered(tmp_path, 10), eval_fraction=0))
    assert len(splits.train) == 10 and splits.eval == []


def test_single_row_is_never_all_eval(tmp_path):
    splits = load_splits(recipe(_numbered(tmp_path, 1), eval_fraction=0.5))
    assert len(splits.train) == 1 and splits.eval == []


def test_eval_file_is_used_instead_of_a_split(tmp_path):
    train = _numbered(tmp_path, 20)
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "held out A"}, {"text": "held out B"}])
    splits = load_splits(recipe(train, eval=str(ev), eval_fraction=0.5))
    assert len(splits.train) == 20
    assert splits.eval == [{"text": "held out A"}, {"text": "held out B"}]


def test_max_train_samples(tmp_path):
    path = _numbered(tmp_path, 50)
    a = load_splits(recipe(path, eval_fraction=0, max_train_samples=12))
    b = load_splits(recipe(path, eval_fraction=0, max_train_samples=12))
    ids = [r["i"] for r in a.train]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert a.train == b.train
    assert ids != list(range(12))  # a random sample, not the first N
    assert set(ids) <= set(range(50))


def test_max_train_samples_is_taken_from_train_after_the_split(tmp_path):
    path = _numbered(tmp_path, 50)
    splits = load_splits(recipe(path, eval_fraction=0.2, max_train_samples=5))
    assert len(splits.train) == 5 and len(splits.eval) == 10
    assert not {r["i"] for r in splits.train} & {r["i"] for r in splits.eval}


def test_max_train_samples_larger_than_data_keeps_all(tmp_path):
    splits = load_splits(recipe(_numbered(tmp_path, 10), eval_fraction=0, max_train_samples=500))
    assert len(splits.train) == 10


# ---------------------------------------------------------------- label mapping


def _rows(labels, field="label"):
    return [{field: v} for v in labels]


def test_numeric_string_labels_ordered_numerically():
    mapping = label_mapping(_rows(["10", "2", "1", "9", "0", "2"]), "label")
    assert mapping == {"0": 0, "1": 1, "2": 2, "9": 3, "10": 4}


def test_int_labels_ordered_numerically_and_negative():
    assert label_mapping(_rows([10, -1, 9, 1]), "label") == {"-1": 0, "1": 1, "9": 2, "10": 3}


def test_binary_int_labels_keep_their_values():
    assert label_mapping(_rows([1, 0, 1, 1]), "label") == {"0": 0, "1": 1}


def test_string_labels_ordered_alphabetically():
    assert label_mapping(_rows(["positive", "negative", "neutral", "negative"]), "label") == \
        {"negative": 0, "neutral": 1, "positive": 2}


def test_mixed_labels_fall_back_to_alphabetical():
    assert label_mapping(_rows(["10", "9", "x"]), "label") == {"10": 0, "9": 1, "x": 2}


def test_float_integral_labels_ordered_numerically():
    mapping = label_mapping(_rows([0.0, 2.0, 10.0, 1.0]), "label")
    assert list(mapping) == ["0.0", "1.0", "2.0", "10.0"]


def test_unicode_digit_labels_do_not_crash():
    assert set(label_mapping(_rows(["¹", "²"]), "label")) == {"¹", "²"}


# ---------------------------------------------------------------- tokenization (tiny real tokenizer)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    """The tiny Llama's tokenizer (ChatML template, EOS <|im_end|>); the model is built once (conftest)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture
def plain_tokenizer(tokenizer):
    """The same tokenizer without its chat template (the plain-prompt path)."""
    saved = tokenizer.chat_template
    tokenizer.chat_template = None
    yield tokenizer
    tokenizer.chat_template = saved


SFT_ROWS = [{"prompt": "What is the capital of Peru?", "response": "Arr, Lima be the capital."},
            {"prompt": "Hello", "response": "Ahoy, matey!"}]


def _split(example):
    """(prompt part, response part) of a tokenized SFT example, by its labels."""
    n_prompt = sum(1 for label in example["labels"] if label == IGNORE_INDEX)
    return example["input_ids"][:n_prompt], example["input_ids"][n_prompt:]


def test_sft_masks_prompt_and_learns_response_with_chat_template(tokenizer):
    out = tokenize_sft(SFT_ROWS, tokenizer, recipe("t.jsonl", max_length=256))
    assert (out.truncated, out.dropped) == (0, 0)
    assert len(out.examples) == 2
    for row, ex in zip(SFT_ROWS, out.examples):
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels)
        n_prompt = labels.index(next(label for label in labels if label != IGNORE_INDEX))
        # every prompt token is masked, every response token is learned as itself
        assert all(label == IGNORE_INDEX for label in labels[:n_prompt])
        assert labels[n_prompt:] == ids[n_prompt:]
        prompt_text = tokenizer.decode(ids[:n_prompt])
        assert row["prompt"] in prompt_text and prompt_text.endswith("<|im_start|>assistant\n")
        assert row["response"] not in prompt_text
        answer = tokenizer.decode(ids[n_prompt:])
        assert answer == row["response"] + "<|im_end|>\n"
        # the end-of-turn token is learned (followed only by the template's newline)
        assert tokenizer.eos_token == "<|im_end|>"
        assert tokenizer.eos_token_id in labels[n_prompt:]
        assert tokenizer.decode(labels[labels.index(tokenizer.eos_token_id) + 1:]).strip() == ""


def test_sft_plain_prompt_gets_bos_and_response_ends_with_eos(plain_tokenizer):
    tok = plain_tokenizer
    out = tokenize_sft(SFT_ROWS[:1], tok, recipe("t.jsonl"))
    prompt, answer = _split(out.examples[0])
    assert prompt[0] == tok.bos_token_id
    assert tok.decode(prompt[1:]) == SFT_ROWS[0]["prompt"] + "\n"
    assert answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == SFT_ROWS[0]["response"]


def test_sft_system_prompt_is_in_the_masked_prompt(tokenizer):
    r = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"},
                      "generate": {"system_prompt": "You are a pirate."}})
    prompt, answer = _split(tokenize_sft(SFT_ROWS[:1], tokenizer, r).examples[0])
    assert "<|im_start|>system\nYou are a pirate.<|im_end|>" in tokenizer.decode(prompt)
    assert "pirate" not in tokenizer.decode(answer)


def test_sft_drops_examples_whose_response_is_cut_away(tokenizer):
    full = tokenize_sft(SFT_ROWS[:1], tokenizer, recipe("t.jsonl")).examples[0]
    n_prompt = len(_split(full)[0])
    # exactly the prompt fits: nothing left to learn → dropped (and counted as truncated)
    cut = tokenize_sft(SFT_ROWS[:1], tokenizer, recipe("t.jsonl", max_length=n_prompt))
    assert (cut.examples, cut.dropped, cut.truncated) == ([], 1, 1)
    shorter = tokenize_sft(SFT_ROWS[:1], tokenizer, recipe("t.jsonl", max_length=n_prompt - 3))
    assert (shorter.examples, shorter.dropped) == ([], 1)
    # one more token: kept, truncated, one learned token
    one = tokenize_sft(SFT_ROWS[:1], tokenizer, recipe("t.jsonl", max_length=n_prompt + 1))
    assert (one.dropped, one.truncated) == (0, 1)
    (ex,) = one.examples
    assert len(ex["input_ids"]) == n_prompt + 1
    assert ex["labels"] == [IGNORE_INDEX] * n_prompt + [full["input_ids"][n_prompt]]


def test_sft_drop_counts_only_the_cut_rows(tokenizer):
    long_prompt = {"prompt": "word " * 60, "response": "yes"}
    out = tokenize_sft([long_prompt, SFT_ROWS[1]], tokenizer, recipe("t.jsonl", max_length=24))
    assert out.dropped == 1
    assert len(out.examples) == 1
    assert "Ahoy" in tokenizer.decode(out.examples[0]["input_ids"])


def test_tokenize_text_learns_every_token_and_ends_with_eos(tokenizer):
    out = tokenize_text([{"text": "The quick brown fox"}], tokenizer, recipe("t.jsonl"))
    (ex,) = out.examples
    assert ex["labels"] == ex["input_ids"]
    assert ex["input_ids"][-1] == tokenizer.eos_token_id
    short = tokenize_text([{"text": "The quick brown fox"}], tokenizer, recipe("t.jsonl", max_length=3))
    assert short.truncated == 1 and len(short.examples[0]["input_ids"]) == 3


def test_tokenize_classification_maps_labels(tokenizer):
    r = recipe("t.jsonl", task="sequence-classification", max_length=8)
    rows = [{"text": "good film", "label": 1}, {"text": "word " * 40, "label": 0}]
    mapping = label_mapping(rows, "label")
    out = tokenize_classification(rows, tokenizer, r, mapping)
    assert [ex["labels"] for ex in out.examples] == [1, 0]
    assert len(out.examples[1]["input_ids"]) == 8
    assert out.truncated == 1


def test_tokenize_classification_rejects_unseen_eval_labels(tokenizer):
    r = recipe("t.jsonl", task="sequence-classification")
    mapping = label_mapping([{"label": "pos"}, {"label": "neg"}], "label")
    rows = [{"text": "meh", "label": "neutral"}, {"text": "ok", "label": "pos"}]
    with pytest.raises(DataError) as info:
        tokenize_classification(rows, tokenizer, r, mapping, source="eval.jsonl")
    assert "eval.jsonl" in info.value.message
    assert "neutral" in info.value.message
    assert "pos" not in info.value.message.split("training labels")[0]


# ---------------------------------------------------------------- padding


def test_pad_collator_token_labels():
    import torch

    batch = PadCollator(pad_token_id=7)([
        {"input_ids": [1, 2, 3], "labels": [IGNORE_INDEX, 2, 3]},
        {"input_ids": [4], "labels": [4]},
    ])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_pad_collator_class_labels():
    batch = PadCollator(pad_token_id=0)([{"input_ids": [5, 6], "labels": 2}, {"input_ids": [9, 9, 9, 9], "labels": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 0, 0], [9, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [2, 0]



# ---------------------------------------------------------------- plain text and gzip


def test_txt_is_one_example_per_line_under_the_text_field(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text('first "quoted" line\n\n  \nsecond line\n', encoding="utf-8")
    assert read_rows(str(path)) == [{"text": 'first "quoted" line'}, {"text": "second line"}]
    assert read_rows(str(path), text_field="sentence") == [{"sentence": 'first "quoted" line'},
                                                             {"sentence": "second line"}]


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv", "d.tsv", "d.txt", "d.parquet"])
def test_every_format_reads_the_same_gzipped(tmp_path, name):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": 'a "b", c', "label": "x"}, {"text": "d", "label": "y"}]
    plain = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), plain)
    else:
        body = {"d.jsonl": "".join(json.dumps(r) + "\n" for r in rows), "d.json": json.dumps(rows),
                "d.csv": 'text,label\n"a ""b"", c",x\nd,y\n', "d.tsv": 'text\tlabel\na "b", c\tx\nd\ty\n',
                "d.txt": 'a "b", c\nd\n'}[name]
        plain.write_text(body, encoding="utf-8")
    zipped = tmp_path / f"{name}.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    expected = read_rows(str(plain))
    assert read_rows(str(zipped)) == expected
    assert [r["text"] for r in expected] == ['a "b", c', "d"]


def test_a_broken_gzip_file_is_named(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_rows(str(path))


def test_a_txt_corpus_is_plain_text_language_modelling(tmp_path):
    path = tmp_path / "corpus.txt.gz"
    import gzip

    path.write_bytes(gzip.compress("".join(f"line {i}\n" for i in range(10)).encode()))
    recipe = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": str(path), "text_field": "body"}})
    splits = load_splits(recipe)
    assert splits.mode == "text" and len(splits.train) == 9 and splits.train[0]["body"].startswith("line")
