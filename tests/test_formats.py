"""Row formats: what load_splits picks from the task and the data's fields, explicit data.format,
and the checks that make a row usable (alpaca input optional, chat turns well formed)."""

from __future__ import annotations

import pytest

from conftest import write_jsonl
from ftcli.data.splits import load_splits
from ftcli.errors import DataError
from ftcli.recipe import parse_recipe

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]


def recipe(train, task: str = "causal-lm", **data):
    return parse_recipe({"task": task, "model": {"name_or_path": "m"}, "data": {"train": str(train), **data}})


def splits_of(tmp_path, rows, task="causal-lm", **data):
    return load_splits(recipe(write_jsonl(tmp_path / "t.jsonl", rows), task, eval_fraction=0, **data))


@pytest.mark.parametrize("row, mode, fmt", [
    ({"messages": CHAT, "prompt": "p", "response": "r", "text": "t"}, "sft", "messages"),
    ({"prompt": "p", "response": "r", "instruction": "i", "output": "o", "text": "t"}, "sft", "prompt_response"),
    ({"instruction": "i", "input": "x", "output": "o", "text": "t"}, "sft", "alpaca"),
    ({"text": "t", "instruction": "only an instruction"}, "text", "text"),
])
def test_auto_detection_order(tmp_path, row, mode, fmt):
    splits = splits_of(tmp_path, [row] * 3)
    assert (splits.mode, splits.format) == (mode, fmt)


@pytest.mark.parametrize("task, row, mode", [
    ("sequence-classification", {"text": "t", "label": 1, "messages": CHAT}, "classification"),
    ("seq2seq", {"prompt": "p", "response": "r", "messages": CHAT}, "seq2seq"),
    ("masked-lm", {"text": "t", "prompt": "p", "response": "r"}, "text"),
])
def test_other_tasks_decide_their_own_format(tmp_path, task, row, mode):
    splits = splits_of(tmp_path, [row] * 3, task=task)
    assert splits.mode == splits.format == mode


def test_seq2seq_needs_prompt_and_response(tmp_path):
    with pytest.raises(DataError, match="field\\(s\\) response not found .*the data has: prompt, text"):
        splits_of(tmp_path, [{"prompt": "p", "text": "t"}], task="seq2seq")


def test_explicit_format_overrides_detection(tmp_path):
    rows = [{"messages": CHAT, "text": "plain"}] * 2
    assert splits_of(tmp_path, rows, format="text").format == "text"


def test_explicit_format_names_its_missing_fields(tmp_path):
    with pytest.raises(DataError) as info:
        splits_of(tmp_path, [{"instruction": "i", "text": "t"}], format="alpaca")
    assert "field(s) output not found (needed by the alpaca format)" in info.value.message
    assert "the data has: instruction, text" in info.value.message


def test_format_that_does_not_fit_the_task(tmp_path):
    with pytest.raises(DataError, match="data.format 'messages' does not apply to task seq2seq"):
        splits_of(tmp_path, [{"prompt": "p", "response": "r"}], task="seq2seq", format="messages")


def test_causal_lm_error_mentions_every_format(tmp_path):
    with pytest.raises(DataError) as info:
        splits_of(tmp_path, [{"question": "q", "answer": "a"}])
    message = info.value.message
    assert "'instruction' and 'output' (alpaca)" in message and "'messages' (chat turns)" in message
    assert "the data has: question, answer" in message


def test_alpaca_input_is_optional_but_instruction_and_output_are_not(tmp_path):
    rows = [{"instruction": "Add", "input": "1 1", "output": "2"}, {"instruction": "Greet", "output": "Hi"},
            {"instruction": "Empty input", "input": "", "output": "ok"}, {"instruction": "", "output": "x"},
            {"instruction": "No output", "input": "y", "output": "  "}]
    splits = splits_of(tmp_path, rows)
    assert splits.format == "alpaca"
    assert [r["instruction"] for r in splits.train] == ["Add", "Greet", "Empty input"]
    assert splits.cleaning["train"]["incomplete"] == 2


def test_real_alpaca_file_is_detected():
    from conftest import shared_data

    splits = load_splits(recipe(shared_data("alpaca/alpaca_5000.json"), eval_fraction=0))
    assert splits.format == "alpaca" and len(splits.train) > 4900
    assert any(r.get("input") == "" for r in splits.train)  # empty input kept


def test_empty_chats_are_incomplete_rows(tmp_path):
    splits = splits_of(tmp_path, [{"messages": CHAT}, {"messages": []}, {"messages": None}, {"other": 1}])
    assert splits.train == [{"messages": CHAT}] and splits.cleaning["train"]["incomplete"] == 3


@pytest.mark.parametrize("messages, problem", [
    ("Hi there", "is a str, not a list of turns"),
    ([CHAT[0], "Ahoy!"], "turn 2 is a str"),
    ([{"role": "user"}, CHAT[1]], "turn 1 has no string 'content'"),
    ([CHAT[0], {"role": None, "content": "x"}], "turn 2 has no string 'role'"),
    ([CHAT[0], {"role": "user", "content": "again"}], "has no assistant turn"),
])
def test_malformed_chat_names_source_and_row(tmp_path, messages, problem):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": CHAT}, {"messages": messages}])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert f"{path}: row 2: 'messages' {problem}" in info.value.message
    assert "assistant" in info.value.hint


def test_renamed_messages_field(tmp_path):
    splits = splits_of(tmp_path, [{"conversation": CHAT, "text": "t"}] * 2, messages_field="conversation")
    assert splits.format == "messages" and splits.train[0]["conversation"] == CHAT


# ------------------------------------------------------- a list or mapping never becomes training text

TRL_CONVERSATIONAL = {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant",
                                                                                    "content": "Ahoy!"}]}


@pytest.mark.parametrize("rows, data, field, kind", [
    # TRL's conversational prompt/completion, mapped onto prompt_response by hand
    ([{"prompt": "ok", "response": "fine"}, {**TRL_CONVERSATIONAL, "response": TRL_CONVERSATIONAL["completion"]}],
     {}, "prompt", "list"),
    ([{"prompt": "p", "response": "r"}, {"prompt": "p", "response": {"text": "r"}}], {}, "response", "mapping"),
    ([{"instruction": "i", "output": "o"}, {"instruction": "i", "input": ["a", "b"], "output": "o"}], {},
     "input", "list"),
    ([{"text": "fine"}, {"text": ["a", "b"]}], {}, "text", "list"),
])
def test_a_list_or_mapping_where_text_belongs_names_file_row_and_field(tmp_path, rows, data, field, kind):
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_splits(recipe(path, **data))
    assert info.value.message.startswith(f"{path}: row 2: '{field}' is a {kind}, not text")


def test_a_hand_mapped_conversational_prompt_completion_points_to_the_chat_formats(tmp_path):
    row = {**TRL_CONVERSATIONAL, "response": TRL_CONVERSATIONAL["completion"]}
    with pytest.raises(DataError) as info:
        load_splits(recipe(write_jsonl(tmp_path / "t.jsonl", [row])))
    assert "prompt and completion" in info.value.hint
