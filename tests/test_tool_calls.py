"""Tool-calling chats: OpenAI's spelling (assistant `tool_calls`, `tool` turns), ShareGPT's
(function_call / observation turns) and TRL's conversational prompt/completion, with a tools column
handed to the chat template. The assistant's calls are learned token by token; tool results, user and
system turns are not; templates that cannot write tools are refused, in validate as in finetune; and
generation and eval ask the model exactly as training showed it."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from conftest import write_jsonl
from ftcli.data.splits import load_splits
from ftcli.data.generation_prompts import prompt_and_reference
from ftcli.data.templates import CHATML_TEMPLATE
from ftcli.data.tokenize import IGNORE_INDEX, tokenize_sft
from ftcli.errors import DataError
from ftcli.generation.prompting import format_generation_prompt
from ftcli.recipe import GenerateSection, parse_recipe
from test_end_to_end import run_cli, write_recipe

WEATHER = {"name": "get_weather", "description": "Today's weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SYSTEM = "You are a pirate with a barometer."
OPENAI_ROW = {
    "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Weather in Lima?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Lima"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"grey\", \"temp\": 18}"},
        {"role": "assistant", "content": "Arr, grey skies over Lima."},
    ],
    "tools": [{"type": "function", "function": WEATHER}],
}
# The same chat as LLaMA-Factory writes it: tools as a JSON string, the call as a function_call turn.
SHAREGPT_ROW = {
    "conversations": [
        {"from": "human", "value": "Weather in Lima?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Lima"}})},
        {"from": "observation", "value": "{\"sky\": \"grey\", \"temp\": 18}"},
        {"from": "gpt", "value": "Arr, grey skies over Lima."},
    ],
    "system": SYSTEM,
    "tools": json.dumps([WEATHER]),
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call><|im_end|>\n'


def recipe(train, **data):
    return parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                         "data": {"train": str(train), "eval_fraction": 0, "max_length": 512, **data}})


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def tokenized(tmp_path, tokenizer, rows, **data):
    r = recipe(write_jsonl(tmp_path / "chats.jsonl", rows), **data)
    splits = load_splits(r)
    return splits, tokenize_sft(splits.train, tokenizer, r, splits.format).examples


def learned_and_ignored(tokenizer, example) -> tuple[list[str], str]:
    """The learned stretches of an example as text, and all of its ignored text."""
    stretches, current, ignored = [], [], []
    for token, label in zip(example["input_ids"], example["labels"]):
        if label == IGNORE_INDEX:
            ignored.append(token)
            if current:
                stretches.append(tokenizer.decode(current))
                current = []
        else:
            assert label == token
            current.append(token)
    if current:
        stretches.append(tokenizer.decode(current))
    return stretches, tokenizer.decode(ignored)


def test_openai_tool_calls_learn_the_call_and_the_answer_and_nothing_else(tmp_path, tokenizer):
    splits, (example,) = tokenized(tmp_path, tokenizer, [OPENAI_ROW], template="chatml")
    assert splits.format == "messages"
    learned, ignored = learned_and_ignored(tokenizer, example)
    assert learned == [CALL_TEXT, "Arr, grey skies over Lima.<|im_end|>\n"]
    # The tools' schema, the system prompt, the question and the tool's result are context.
    for context in (SYSTEM, json.dumps(WEATHER), "Weather in Lima?", '{"sky": "grey", "temp": 18}'):
        assert context in ignored
    assert "<|im_start|>tool\n" in ignored and ignored.endswith("<|im_start|>assistant\n")


def test_sharegpt_tool_turns_train_exactly_as_the_openai_spelling(tmp_path, tokenizer):
    splits, (sharegpt,) = tokenized(tmp_path, tokenizer, [SHAREGPT_ROW], template="chatml")
    assert splits.format == "sharegpt"
    _, (openai,) = tokenized(tmp_path, tokenizer, [OPENAI_ROW], template="chatml")
    assert sharegpt == openai


def test_conversational_prompt_completion_learns_only_the_completion(tmp_path, tokenizer):
    turns = OPENAI_ROW["messages"]
    row = {"prompt": turns[:4], "completion": turns[4:], "tools": OPENAI_ROW["tools"]}
    splits, (example,) = tokenized(tmp_path, tokenizer, [row], template="chatml")
    assert splits.format == "prompt_completion"
    learned, ignored = learned_and_ignored(tokenizer, example)
    assert learned == ["Arr, grey skies over Lima.<|im_end|>\n"]  # the prompt's call is context
    assert CALL_TEXT in ignored
    # A call in the completion is learned, and its result after it is not.
    row = {"prompt": turns[:2], "completion": turns[2:], "tools": OPENAI_ROW["tools"]}
    _, (example,) = tokenized(tmp_path, tokenizer, [row], template="chatml")
    assert learned_and_ignored(tokenizer, example)[0] == [CALL_TEXT, "Arr, grey skies over Lima.<|im_end|>\n"]


def test_last_assistant_turn_only(tmp_path, tokenizer):
    _, (example,) = tokenized(tmp_path, tokenizer, [OPENAI_ROW], template="chatml", assistant_turns="last")
    learned, ignored = learned_and_ignored(tokenizer, example)
    assert learned == ["Arr, grey skies over Lima.<|im_end|>\n"] and CALL_TEXT in ignored


def test_tools_in_another_field_and_several_calls_in_one_turn(tmp_path, tokenizer):
    calls = [{"name": "get_weather", "arguments": {"city": c}} for c in ("Lima", "Cusco")]  # bare {name, arguments}
    row = {"messages": [{"role": "user", "content": "Lima and Cusco?"},
                        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
                        {"role": "tool", "content": "grey"}, {"role": "tool", "content": "sunny"},
                        {"role": "assistant", "content": "Grey, then sunny."}],
           "functions": json.dumps([WEATHER])}
    _, (example,) = tokenized(tmp_path, tokenizer, [row], template="chatml", tools_field="functions")
    learned, ignored = learned_and_ignored(tokenizer, example)
    assert learned[0] == ('Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n'
                          '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Cusco"}}\n'
                          '</tool_call><|im_end|>\n')
    assert "get_weather" in ignored.split("<|im_start|>user")[0]  # the schema, in the system turn


def test_a_template_that_drops_tool_calls_is_refused_rather_than_trained_on_empty_replies(tmp_path, tokenizer):
    # The fixture's own template is plain ChatML: it writes neither tools nor tool calls.
    path = write_jsonl(tmp_path / "chats.jsonl", [OPENAI_ROW])
    r = recipe(path, template="chat")
    splits = load_splits(r)
    with pytest.raises(DataError) as info:
        tokenize_sft(splits.train, tokenizer, r, splits.format)
    assert "does not write the tools it is given (get_weather" in info.value.message
    assert "data.template: chatml" in info.value.hint
    no_tools = {"messages": OPENAI_ROW["messages"]}
    splits = load_splits(recipe(write_jsonl(tmp_path / "chats.jsonl", [no_tools]), template="chat"))
    with pytest.raises(DataError, match="does not write tool calls: the reply's call to get_weather"):
        tokenize_sft(splits.train, tokenizer, r, splits.format)


def test_a_model_template_that_writes_tools_gets_them(tmp_path, tiny_llama):
    """data.template: chat hands tools and calls to the model's own template (here one in the
    Llama-3.1 manner: schemas in the first user turn, a call as bare JSON)."""
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if loop.index0 == 1 and tools %}Functions: {% for t in tools %}{{ t | tojson }}{% endfor %}\n{% endif %}"
        "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}{{ c['function'] | tojson }}{% endfor %}"
        "{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    _, (example,) = tokenized(tmp_path, tok, [OPENAI_ROW], template="chat")
    learned, ignored = learned_and_ignored(tok, example)
    assert learned == ['{"name": "get_weather", "arguments": {"city": "Lima"}}<|im_end|>\n',
                       "Arr, grey skies over Lima.<|im_end|>\n"]
    assert 'Functions: {"type": "function", "function": {"name": "get_weather"' in ignored


def test_plain_chatml_chats_render_as_before(tokenizer):
    """Tools support changed nothing for chats without tools: ChatML as Qwen and SmolLM2 write it."""
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Ahoy!"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, chat_template=CHATML_TEMPLATE)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nAhoy!<|im_end|>\n"


# --------------------------------------------------------------------------------------- bad rows

TURNS = OPENAI_ROW["messages"]


@pytest.mark.parametrize("messages, problem", [
    ([TURNS[1], TURNS[3], TURNS[4]], "turn 2 is a tool result with no tool call before it"),
    ([TURNS[1], {"role": "robot", "content": "beep"}, TURNS[4]],
     "turn 2 has role 'robot', not one of system, user, assistant, tool"),
    ([{**TURNS[1], "tool_calls": TURNS[2]["tool_calls"]}, TURNS[4]],
     "turn 1 (user) has tool_calls: only assistant turns call tools"),
    ([TURNS[1], {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": "{city"}}]}],
     "turn 2: tool call 1 has arguments that are not JSON"),
    ([TURNS[1], {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}],
     "turn 2: tool call 1 has no string 'name'"),
    ([TURNS[1], TURNS[2], {**TURNS[3], "tool_call_id": "call_9"}, TURNS[4]],
     "turn 3 answers tool call 'call_9', which the call before it did not make"),
    ([TURNS[1], {"role": "assistant"}], "turn 2 has no string 'content'"),
])
def test_a_bad_tool_chat_names_file_row_and_turn(tmp_path, messages, problem):
    path = write_jsonl(tmp_path / "chats.jsonl", [OPENAI_ROW, {"messages": messages}])
    with pytest.raises(DataError) as info:
        load_splits(recipe(path))
    assert f"{path}: row 2: 'messages' {problem}" in info.value.message
    assert "tool" in info.value.hint


def test_a_tool_result_before_any_call_in_sharegpt_and_prompt_completion(tmp_path):
    turns = SHAREGPT_ROW["conversations"]
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [turns[0], turns[2], turns[3]]}])
    with pytest.raises(DataError, match="row 1: 'conversations' turn 2 is a tool result with no tool call"):
        load_splits(recipe(path))
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": [TURNS[1]], "completion": [TURNS[3], TURNS[4]]}])
    with pytest.raises(DataError, match="row 1: 'prompt' turn 2 is a tool result with no tool call"):
        load_splits(recipe(path))


def test_empty_conversations_are_dropped_and_counted(tmp_path):
    splits = load_splits(recipe(write_jsonl(tmp_path / "c.jsonl", [OPENAI_ROW, {"messages": [], "tools": []}])))
    assert len(splits.train) == 1 and splits.cleaning["train"]["incomplete"] == 1


# ---------------------------------------------------------------------- validate agrees with finetune

def test_validate_refuses_a_template_without_tools_as_finetune_does(workdir, tiny_llama):
    data = write_jsonl(workdir / "chats.jsonl", [OPENAI_ROW] * 8)
    raw = {"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
           "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 256},
           "train": {"output_dir": "runs/tools", "max_steps": 1, "batch_size": 4}}
    path = write_recipe(workdir / "tools.yaml", raw)
    for command in ("validate", "finetune"):
        result = run_cli(command, str(path))
        assert result.exit_code == 2, result.output
        assert "does not write the tools it is given" in result.output and "Traceback" not in result.output
    assert not (workdir / "runs" / "tools").exists()
    raw["data"]["template"] = "chatml"
    result = run_cli("validate", str(write_recipe(workdir / "tools.yaml", raw)))
    assert result.exit_code == 0, result.output


# -------------------------------------------------------------------- asked as it was trained

def test_generation_and_eval_prompts_are_the_training_context(tmp_path, tokenizer):
    row = {"messages": TURNS[:3], "tools": OPENAI_ROW["tools"]}  # a chat whose answer is the call
    r = recipe(write_jsonl(tmp_path / "c.jsonl", [row]), template="chatml")
    splits = load_splits(r)
    (example,) = tokenize_sft(splits.train, tokenizer, r, splits.format).examples
    context = tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label == IGNORE_INDEX])

    settings = GenerateSection(system_prompt=SYSTEM, tools=[WEATHER])
    asked = format_generation_prompt(tokenizer, "Weather in Lima?", settings, chat=CHATML_TEMPLATE)
    assert asked == context
    prompt, reference = prompt_and_reference(splits.train[0], r, splits.format, tokenizer)
    assert prompt == context
    assert reference == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>'


def test_generate_reads_a_tools_file_and_refuses_bad_ones(tmp_path, tokenizer):
    good = tmp_path / "tools.json"
    good.write_text(json.dumps([WEATHER]), encoding="utf-8")
    asked = format_generation_prompt(tokenizer, "Hi", GenerateSection(tools=str(good)), chat=CHATML_TEMPLATE)
    assert json.dumps({"type": "function", "function": WEATHER}) in asked
    bad = tmp_path / "bad.json"
    bad.write_text('[{"description": "no name"}]', encoding="utf-8")
    from ftcli.errors import UserError

    with pytest.raises(UserError, match="tool 1 has no string 'name'"):
        format_generation_prompt(tokenizer, "Hi", GenerateSection(tools=str(bad)), chat=CHATML_TEMPLATE)
    with pytest.raises(UserError, match="tools are handed to a chat template"):
        format_generation_prompt(tokenizer, "Hi", GenerateSection(tools=[WEATHER]), chat=False)
    with pytest.raises(DataError, match="does not write the tools"):
        format_generation_prompt(tokenizer, "Hi", GenerateSection(tools=[WEATHER]), chat=True)


def test_a_tuned_tool_caller_calls_the_tool_when_asked_with_tools(workdir, tiny_llama):
    """End to end: train on one question answered with a call when tools are given and in words
    when not; `ftcli generate --tools` asks as training did, so the tuned model calls, and without
    tools it answers in words."""
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    question = {"role": "user", "content": "Weather in Lima?"}
    call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"city": "Lima"})}}]}
    words = {"role": "assistant", "content": "Arr, no barometer aboard."}
    rows = [{"messages": [question, call], "tools": [weather]}, {"messages": [question, words]}] * 16
    data = write_jsonl(workdir / "calls.jsonl", rows)
    raw = {"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
           "data": {"train": str(data), "eval_fraction": 0, "max_length": 500, "template": "chatml"},
           "train": {"output_dir": "runs/caller", "max_steps": 200, "batch_size": 8, "learning_rate": 1e-2,
                     "logging_steps": 20},
           "generate": {"max_new_tokens": 80}}
    result = run_cli("finetune", str(write_recipe(workdir / "caller.yaml", raw)))
    assert result.exit_code == 0, result.output
    tools = workdir / "tools.json"
    tools.write_text(json.dumps([weather]), encoding="utf-8")
    result = run_cli("generate", "Weather in Lima?", "--run", "runs/caller", "--tools", str(tools))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>'
    result = run_cli("generate", "Weather in Lima?", "--run", "runs/caller")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Arr, no barometer aboard."


def _readme_jsonl(after: str) -> list[dict]:
    from conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text[text.index("```jsonl\n", text.index(after)) + len("```jsonl\n"):]
    return [json.loads(line) for line in block[:block.index("```")].splitlines()]


def test_the_readme_examples_are_read_as_documented(tmp_path, tokenizer):
    formats = ["messages", "sharegpt", "prompt_response", "prompt_completion", "prompt_completion", "alpaca", "text"]
    for row, fmt in zip(_readme_jsonl("**Formats**"), formats, strict=True):
        assert load_splits(recipe(write_jsonl(tmp_path / "f.jsonl", [row]))).format == fmt
    openai, sharegpt = _readme_jsonl("**Tool calling**")
    (a,), (b,) = (tokenized(tmp_path, tokenizer, [row], template="chatml")[1] for row in (openai, sharegpt))
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call><|im_end|>\n'
    assert learned_and_ignored(tokenizer, a)[0] == learned_and_ignored(tokenizer, b)[0] == \
        [call, "Grey skies, 18C.<|im_end|>\n"]
