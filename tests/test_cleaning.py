"""Cleaning: normalising text (NFC and line ends only: whitespace is content), dropping incomplete rows,
duplicates and rows outside min_chars/max_chars, with a count for every step."""

from __future__ import annotations

from conftest import write_jsonl
from ftcli.data.cleaning import normalize_text, summary
from ftcli.data.splits import load_splits
from ftcli.recipe import parse_recipe


def load(tmp_path, rows, task="causal-lm", name="t.jsonl", **data):
    path = write_jsonl(tmp_path / name, rows)
    return load_splits(parse_recipe({"task": task, "model": {"name_or_path": "m"},
                                     "data": {"train": str(path), "eval_fraction": 0, **data}}))


def test_normalize_text():
    assert normalize_text("e\u0301") == "\u00e9"  # NFC: e + combining acute → é
    assert normalize_text("  a\r\nb\rc\n\t") == "  a\nb\nc\n\t"  # line ends only; whitespace is kept
    assert normalize_text("ok") == "ok"


def test_normalize_counts_changed_rows_and_leaves_other_fields(tmp_path):
    rows = [{"prompt": "cafe\u0301", "response": "yes", "id": "  keep  "},
            {"prompt": "q\r\n", "response": "a"}, {"prompt": "same", "response": "same"}]
    splits = load(tmp_path, rows)
    assert splits.train[0] == {"prompt": "café", "response": "yes", "id": "  keep  "}
    assert splits.train[1] == {"prompt": "q\n", "response": "a"}
    assert splits.cleaning["train"]["normalized"] == 2


def test_normalize_can_be_turned_off(tmp_path):
    splits = load(tmp_path, [{"text": " e\u0301 "}], normalize=False)
    assert splits.train == [{"text": " e\u0301 "}] and splits.cleaning["train"]["normalized"] == 0


def test_normalize_reaches_alpaca_fields_and_chat_turns(tmp_path):
    alpaca = load(tmp_path, [{"instruction": " Do\r\n", "input": "e\u0301 ", "output": " done"}])
    assert alpaca.train == [{"instruction": " Do\n", "input": "é ", "output": " done"}]
    chats = load(tmp_path, [{"messages": [{"role": "user", "content": " hi\r\n"},
                                          {"role": "assistant", "content": "cafe\u0301 "}]}], name="c.jsonl")
    assert [t["content"] for t in chats.train[0]["messages"]] == [" hi\n", "café "]


def test_classification_labels_are_not_normalised(tmp_path):
    splits = load(tmp_path, [{"text": "good\r\n", "label": "pos\r\n"}], task="sequence-classification")
    assert splits.train == [{"text": "good\n", "label": "pos\r\n"}]


def test_dedup_keeps_the_first_and_compares_after_normalising(tmp_path):
    rows = [{"text": "a\n", "i": 0}, {"text": "b", "i": 1}, {"text": "a\r\n", "i": 2},
            {"text": "cafe\u0301", "i": 3}, {"text": "café", "i": 4}, {"text": "b", "i": 5}]
    splits = load(tmp_path, rows, dedup=True)
    assert [r["i"] for r in splits.train] == [0, 1, 3]  # unused field "i" does not make rows differ
    assert splits.cleaning["train"]["duplicates"] == 3


def test_dedup_is_off_by_default(tmp_path):
    splits = load(tmp_path, [{"text": "a"}, {"text": "a"}])
    assert len(splits.train) == 2 and splits.cleaning["train"]["duplicates"] == 0


def test_dedup_compares_every_used_field(tmp_path):
    rows = [{"prompt": "q", "response": "a"}, {"prompt": "q", "response": "b"}, {"prompt": "q", "response": "a"}]
    splits = load(tmp_path, rows, dedup=True)
    assert [r["response"] for r in splits.train] == ["a", "b"]
    labelled = load(tmp_path, [{"text": "x", "label": 1}, {"text": "x", "label": 0}, {"text": "x", "label": 1}],
                    task="sequence-classification", name="c.jsonl", dedup=True)
    assert [r["label"] for r in labelled.train] == [1, 0]


def test_dedup_works_across_mixed_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "shared"}, {"text": "only a"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "shared"}, {"text": "only b"}])
    splits = load_splits(parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                                       "data": {"train": [str(a), str(b)], "dedup": True, "eval_fraction": 0}}))
    assert sorted(r["text"] for r in splits.train) == ["only a", "only b", "shared"]
    assert [s["rows_kept"] for s in splits.sources] == [2, 1]


def test_min_and_max_chars_count_the_formats_text_in_total(tmp_path):
    rows = [{"prompt": "ab", "response": "c"}, {"prompt": "abcd", "response": "ef"},
            {"prompt": "abcdefgh", "response": "ijk"}, {"prompt": "a\r\n", "response": "b"}]
    splits = load(tmp_path, rows, min_chars=4, max_chars=10)
    # totals after normalising: 3, 6, 11, 3 (\r\n counts as the one \n it becomes)
    assert [r["prompt"] for r in splits.train] == ["abcd"]
    counts = splits.cleaning["train"]
    assert (counts["too_short"], counts["too_long"]) == (2, 1)


def test_chars_of_a_chat_are_its_turns_content(tmp_path):
    chat = {"messages": [{"role": "user", "content": "12345"}, {"role": "assistant", "content": "678"}]}
    assert len(load(tmp_path, [chat], max_chars=8).train) == 1
    assert load(tmp_path, [chat, {"messages": [{"role": "user", "content": "x" * 5},
                                                       {"role": "assistant", "content": "x" * 4}]}], name="c.jsonl",
                max_chars=8).cleaning["train"]["too_long"] == 1


def test_every_count_and_the_summary(tmp_path):
    rows = [{"text": "keep me"}, {"text": "keep me"}, {"text": None}, {"text": "  "}, {"text": "x"},
            {"text": "y" * 50}, {"text": "fine\r\n"}]
    splits = load(tmp_path, rows, dedup=True, min_chars=2, max_chars=20)
    assert splits.cleaning == {"train": {"normalized": 1, "incomplete": 2, "duplicates": 1, "too_short": 1,
                                         "too_long": 1}}
    assert [r["text"] for r in splits.train] == ["keep me", "fine\n"]
    assert splits.rows_dropped == 5
    assert splits.dropped_summary() == "5 rows (2 incomplete, 1 duplicate, 1 too short, 1 too long)"


def test_eval_rows_are_cleaned_and_counted_separately(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}, {"text": "b"}])
    ev = write_jsonl(tmp_path / "e.jsonl", [{"text": "c\r\n"}, {"text": "c\n"}, {"text": ""}])
    splits = load_splits(parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                                       "data": {"train": str(train), "eval": str(ev), "dedup": True}}))
    assert splits.eval == [{"text": "c\n"}]
    assert splits.cleaning["eval"] == {"normalized": 1, "incomplete": 1, "duplicates": 1, "too_short": 0,
                                       "too_long": 0}
    assert splits.dropped_summary() == "2 rows (1 incomplete, 1 duplicate)"


def test_an_error_says_why_no_rows_are_left(tmp_path):
    import pytest

    from ftcli.errors import DataError

    with pytest.raises(DataError) as info:
        load(tmp_path, [{"text": "short"}, {"text": "tiny"}], min_chars=100)
    assert "no training rows left after cleaning (2 rows (2 too short) removed)" in info.value.message
    assert "min_chars" in info.value.hint


def test_summary_is_empty_when_nothing_was_removed():
    assert summary({"normalized": 4, "incomplete": 0}) == ""
    assert summary({"incomplete": 1}) == "1 row (1 incomplete)"


CODE_ANSWER = "\n    def double(x):\r\n        return  2 * x\n\n    print(double(3))\n"


def test_a_code_answer_keeps_its_indentation_into_the_tokenized_example(tmp_path, tiny_llama):
    """Normalising touches line ends only: the learned tokens decode to the answer as written."""
    from ftcli.data.prepare import prepare_splits
    from ftcli.data.tokenize import IGNORE_INDEX
    from ftcli.modeling.load import load_tokenizer

    path = write_jsonl(tmp_path / "code.jsonl", [{"prompt": "  Write double().", "response": CODE_ANSWER}] * 2)
    recipe = parse_recipe({"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
                           "data": {"train": str(path), "eval_fraction": 0, "cache": False}})
    splits = load_splits(recipe)
    expected = CODE_ANSWER.replace("\r\n", "\n")
    assert splits.train[0] == {"prompt": "  Write double().", "response": expected}
    tokenizer = load_tokenizer(recipe.model)
    train, _ = prepare_splits(recipe, splits, tokenizer, None)
    example = train.examples[0]
    learned = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == expected + "<|im_end|>\n"  # the reply, then the chat's end of turn
    assert "<|im_start|>user\n  Write double().<|im_end|>" in tokenizer.decode(example["input_ids"])
