"""Row formats: what load_splits picks from the task and the data's fields, explicit data.format,
and the checks that make a row usable (alpaca input optional, chat turns well formed)."""

from __future__ import annotations

import pytest

from conftest import write_jsonl
from ftcli.data.splits import load_splits
from ftcli.errors import DataError, RecipeError
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


# ----------------------------------------------------------------- prompt_completion and sharegpt

PC_STANDARD = {"prompt": "Hi", "completion": "Ahoy!"}
SHAREGPT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Ahoy!"}]}


@pytest.mark.parametrize("row, fmt", [
    (PC_STANDARD, "prompt_completion"),
    (TRL_CONVERSATIONAL, "prompt_completion"),
    ({**PC_STANDARD, "response": "r"}, "prompt_response"),  # data.response_field's own pair comes first
    (SHAREGPT, "sharegpt"),
    ({**SHAREGPT, "system": "Be a pirate.", "text": "t"}, "sharegpt"),
    ({**SHAREGPT, "messages": CHAT}, "messages"),
])
def test_trl_and_sharegpt_rows_are_detected(tmp_path, row, fmt):
    splits = splits_of(tmp_path, [row] * 2)
    assert (splits.mode, splits.format) == ("sft", fmt)
    assert splits.train == [row] * 2  # rows stay as read


def test_conversations_of_role_content_turns_are_not_sharegpt(tmp_path):
    with pytest.raises(DataError, match="ShareGPT"):
        splits_of(tmp_path, [{"conversations": CHAT}])


def test_explicit_prompt_completion_and_sharegpt_name_their_fields(tmp_path):
    for fmt, missing in (("prompt_completion", "completion"), ("sharegpt", "conversations")):
        with pytest.raises(DataError, match=f"field\\(s\\) {missing} not found \\(needed by the {fmt} format\\)"):
            splits_of(tmp_path, [{"prompt": "p", "text": "t"}], format=fmt)


def test_sharegpt_roles_can_be_respelled(tmp_path):
    turns = {"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Ahoy!"}]}
    splits = splits_of(tmp_path, [turns] * 2, roles={"user": "user", "assistant": "assistant"})
    assert splits.format == "sharegpt" and len(splits.train) == 2
    with pytest.raises(DataError, match="turn 1 is from 'user', which data.roles does not map "
                                        r"\(it maps human, gpt, system, function_call, observation\)"):
        splits_of(tmp_path, [turns])


def test_roles_map_only_to_chat_roles():
    with pytest.raises(RecipeError, match="data.roles.human: input should be 'user', 'assistant', 'system', 'tool' "
                                          "or 'tool_call'"):
        recipe("t.jsonl", roles={"human": "customer"})


@pytest.mark.parametrize("row, field, problem", [
    ({"conversations": [SHAREGPT["conversations"][0], {"from": "bot", "value": "x"}]}, "conversations",
     "turn 2 is from 'bot', which data.roles does not map"),
    ({"conversations": [SHAREGPT["conversations"][0], {"from": "function_call", "value": "{}"}]}, "conversations",
     "turn 2 (from: function_call) call 1 has no string 'name'"),
    ({"conversations": [SHAREGPT["conversations"][0], {"from": "function_call", "value": "search(x)"}]},
     "conversations", "turn 2 (from: function_call) is not a tool call's JSON"),
    ({"conversations": [SHAREGPT["conversations"][0], {"from": "observation", "value": "{}"}]}, "conversations",
     "turn 2 is a tool result with no tool call before it"),
    ({**SHAREGPT, "tools": '[{"name": "search"'}, "tools", "is not JSON"),
    ({**SHAREGPT, "tools": '[{"description": "search"}]'}, "tools", "tool 1 has no string 'name'"),
    ({"conversations": [{"from": "human"}, SHAREGPT["conversations"][1]]}, "conversations",
     "turn 1 has no string 'value'"),
    ({"conversations": [{"from": "human", "value": "Hi"}]}, "conversations", "has no assistant turn"),
    ({"conversations": [{"from": "system", "value": "S"}, *SHAREGPT["conversations"]], "system": "S"}, "system",
     "is set and the conversation opens with a system turn too"),
])
def test_a_bad_sharegpt_row_names_file_row_and_turn(tmp_path, row, field, problem):
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [SHAREGPT, row])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path, format="sharegpt"))
    assert f"{path}: row 2: '{field}' {problem}" in info.value.message
    assert "data.roles" in info.value.hint


@pytest.mark.parametrize("row, field, problem", [
    ({"prompt": [{"role": "user", "content": "Hi"}], "completion": "Ahoy!"}, "completion", "is a str, not a list"),
    ({"prompt": [{"role": "user"}], "completion": TRL_CONVERSATIONAL["completion"]}, "prompt",
     "turn 1 has no string 'content'"),
    ({"prompt": TRL_CONVERSATIONAL["prompt"], "completion": [{"role": "user", "content": "x"}]}, "completion",
     "has no assistant turn"),
])
def test_a_bad_conversational_prompt_completion_row_names_file_row_and_field(tmp_path, row, field, problem):
    path = write_jsonl(tmp_path / "pc.jsonl", [TRL_CONVERSATIONAL, row])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert f"{path}: row 2: '{field}' {problem}" in info.value.message


def test_prompt_completion_turns_are_normalised_and_measured(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Cafe\u0301\r\n"}], "completion": [{"role": "assistant",
                                                                                       "content": "ok"}]}
    splits = splits_of(tmp_path, [row], max_chars=8)
    assert splits.train[0]["prompt"][0]["content"] == "Caf\u00e9\n"
    assert splits.cleaning["train"]["normalized"] == 1
    short = {"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}
    assert splits_of(tmp_path, [row, short], max_chars=6).train == [short]  # 5 + 2 chars is too long


# ------------------------------------------------------ a chat that opens with the assistant's reply

@pytest.mark.parametrize("row, field", [
    ({"messages": [{"role": "assistant", "content": "Ahoy!"}, *CHAT]}, "messages"),
    ({"conversations": [{"from": "gpt", "value": "Ahoy!"}, *SHAREGPT["conversations"]]}, "conversations"),
    ({"prompt": [{"role": "assistant", "content": "Ahoy!"}], "completion": TRL_CONVERSATIONAL["completion"]},
     "prompt"),
])
def test_a_chat_opening_with_the_assistant_names_file_and_row(tmp_path, row, field):
    path = write_jsonl(tmp_path / "chats.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert f"{path}: row 1: '{field}' opens with an assistant turn" in info.value.message


# ------------------------------------------------------------- preference files given to SFT

@pytest.mark.parametrize("row, kind", [
    ({"prompt": "Hi", "chosen": "Ahoy!", "rejected": "Go away."}, "pairs of a chosen and a rejected reply"),
    ({"chosen": CHAT, "rejected": [CHAT[0], {"role": "assistant", "content": "No."}]}, "pairs of a chosen"),
    ({**SHAREGPT, "chosen": {"from": "gpt", "value": "Ahoy!"}, "rejected": {"from": "gpt", "value": "No."}},
     "pairs of a chosen"),
    ({"prompt": "Hi", "completion": "Ahoy!", "label": True}, "unpaired preference data (KTO's"),
])
def test_preference_data_in_an_sft_recipe_says_what_it_is(tmp_path, row, kind):
    with pytest.raises(DataError) as info:
        splits_of(tmp_path, [row])
    assert f"this is preference data ({kind}" in info.value.message
    assert "data.response_field: chosen" in info.value.hint


def test_preference_columns_the_recipe_maps_itself_are_trained(tmp_path):
    rows = [{"prompt": "Hi", "chosen": "Ahoy!", "rejected": "Go away."}] * 2
    splits = splits_of(tmp_path, rows, response_field="chosen")
    assert (splits.format, len(splits.train)) == ("prompt_response", 2)
    # A prompt/completion file whose label is not a preference verdict is ordinary SFT data.
    assert splits_of(tmp_path, [{"prompt": "Hi", "completion": "Ahoy!", "label": "greeting"}]).format == \
        "prompt_completion"
