"""SFT prompt templates and loss masking: for every row format and data.template, which tokens are
learned, and that generation and eval ask in exactly the training prompt."""

from __future__ import annotations

import re

import pytest

from conftest import repo_rows, write_jsonl
from ftcli.errors import DataError, ModelError, UserError
from ftcli.data.tokenize import IGNORE_INDEX, prompt_token_ids, tokenize_sft
from ftcli.generation.prompting import format_generation_prompt
from ftcli.recipe import parse_recipe
from ftcli.data.generation_prompts import generation_format, prompt_and_reference

PR_ROW = {"prompt": "What is the capital of Peru?", "response": "Arr, Lima be the capital."}
ALPACA_ROW = {"instruction": "Name a sea.", "input": "", "output": "The Caribbean, matey."}
ALPACA_INPUT_ROW = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "That be 5."}
CHAT_ROW = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Ahoy, matey!"}]}
LONG_CHAT = {"messages": [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Ahoy!"},
    {"role": "user", "content": "Where is the gold?"},
    {"role": "assistant", "content": "Buried on the island."},
]}
PC_ROW = {"prompt": PR_ROW["prompt"], "completion": PR_ROW["response"]}  # TRL's standard prompt/completion
SHAREGPT_ROW = {"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Ahoy, matey!"}]}
ROWS = {"prompt_response": PR_ROW, "alpaca": ALPACA_ROW, "messages": CHAT_ROW, "prompt_completion": PC_ROW,
        "sharegpt": SHAREGPT_ROW}
END = "<|im_end|>\n"  # ChatML's end of an assistant turn
EOS = "<|endoftext|>"  # the plain tokenizer's EOS, and BOS of both tiny tokenizers
ALPACA_HEAD = ("Below is an instruction that describes a task. Write a response that appropriately "
               "completes the request.\n\n### Instruction:\n")


def recipe(**data):
    generate = {"system_prompt": data.pop("system_prompt")} if "system_prompt" in data else {}
    return parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"},
                         "data": {"train": "t.jsonl", **data}, "generate": generate})


@pytest.fixture(scope="module")
def chat_tok(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="module")
def plain_tok(tiny_llama_plain):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_plain)


def one_example(tokenizer, row, format, **data) -> dict:
    out = tokenize_sft([row], tokenizer, recipe(**data), format)
    assert (out.dropped, len(out.examples)) == (0, 1)
    return out.examples[0]


def spans(example) -> list[tuple[bool, list[int]]]:
    """Runs of (learned, token ids); a learned token's label must be the token itself."""
    runs: list[tuple[bool, list[int]]] = []
    for token, label in zip(example["input_ids"], example["labels"], strict=True):
        learned = label != IGNORE_INDEX
        assert label in (IGNORE_INDEX, token)
        if runs and runs[-1][0] == learned:
            runs[-1][1].append(token)
        else:
            runs.append((learned, [token]))
    return runs


def prompt_and_reply(tokenizer, example) -> tuple[str, str]:
    """The decoded masked prefix and learned rest of a single-reply example."""
    (masked, prompt), (learned, reply) = spans(example)
    assert not masked and learned
    return tokenizer.decode(prompt), tokenizer.decode(reply)


# --------------------------------------------------------------- single-turn rows, every template

# (format, template, uses the chat tokenizer, expected prompt text, expected learned text)
CASES = [
    ("prompt_response", "chat", True, "<|im_start|>user\nWhat is the capital of Peru?" + END
     + "<|im_start|>assistant\n", "Arr, Lima be the capital." + END),
    ("prompt_response", "chatml", False, EOS + "<|im_start|>user\nWhat is the capital of Peru?" + END
     + "<|im_start|>assistant\n", "Arr, Lima be the capital." + END),
    ("prompt_response", "plain", False, EOS + "What is the capital of Peru?\n", "Arr, Lima be the capital." + EOS),
    ("prompt_response", "alpaca", False, EOS + ALPACA_HEAD + "What is the capital of Peru?\n\n### Response:\n",
     "Arr, Lima be the capital." + EOS),
    ("prompt_response", "### Q: {prompt}\n### A: ", False, EOS + "### Q: What is the capital of Peru?\n### A: ",
     "Arr, Lima be the capital." + EOS),
    ("alpaca", "chat", True, "<|im_start|>user\nName a sea." + END + "<|im_start|>assistant\n",
     "The Caribbean, matey." + END),
    ("alpaca", "chatml", False, EOS + "<|im_start|>user\nName a sea." + END + "<|im_start|>assistant\n",
     "The Caribbean, matey." + END),
    ("alpaca", "plain", False, EOS + "Name a sea.\n", "The Caribbean, matey." + EOS),
    ("alpaca", "alpaca", False, EOS + ALPACA_HEAD + "Name a sea.\n\n### Response:\n", "The Caribbean, matey." + EOS),
    ("alpaca", "Do: {instruction}\nWith: {input}\n=> ", False, EOS + "Do: Name a sea.\nWith: \n=> ",
     "The Caribbean, matey." + EOS),
    ("messages", "chat", True, "<|im_start|>user\nHello" + END + "<|im_start|>assistant\n", "Ahoy, matey!" + END),
    ("messages", "chatml", False, EOS + "<|im_start|>user\nHello" + END + "<|im_start|>assistant\n",
     "Ahoy, matey!" + END),
]


@pytest.mark.parametrize("format, template, chat, prompt, reply", CASES,
                         ids=[f"{c[0]}-{c[1][:6]}" for c in CASES])
def test_prompt_tokens_are_masked_and_the_reply_with_its_end_is_learned(format, template, chat, prompt, reply,
                                                                         chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    example = one_example(tokenizer, ROWS[format], format, template=template)
    assert prompt_and_reply(tokenizer, example) == (prompt, reply)


def test_auto_is_the_chat_template_when_there_is_one_and_plain_otherwise(chat_tok, plain_tok):
    assert one_example(chat_tok, PR_ROW, "prompt_response") == \
        one_example(chat_tok, PR_ROW, "prompt_response", template="chat")
    assert one_example(plain_tok, PR_ROW, "prompt_response") == \
        one_example(plain_tok, PR_ROW, "prompt_response", template="plain")


def test_alpaca_input_goes_into_the_prompt(chat_tok, plain_tok):
    prompt, _ = prompt_and_reply(plain_tok, one_example(plain_tok, ALPACA_INPUT_ROW, "alpaca", template="alpaca"))
    assert prompt == (EOS + "Below is an instruction that describes a task, paired with an input that provides "
                      "further context. Write a response that appropriately completes the request.\n\n"
                      "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n")
    prompt, _ = prompt_and_reply(chat_tok, one_example(chat_tok, ALPACA_INPUT_ROW, "alpaca", template="chat"))
    assert prompt == "<|im_start|>user\nAdd the numbers.\n\n2 and 3" + END + "<|im_start|>assistant\n"


def test_system_prompt_opens_every_template(chat_tok, plain_tok):
    prompt, _ = prompt_and_reply(chat_tok, one_example(chat_tok, CHAT_ROW, "messages", system_prompt="Be brief."))
    assert prompt.startswith("<|im_start|>system\nBe brief." + END + "<|im_start|>user\nHello")
    prompt, _ = prompt_and_reply(plain_tok, one_example(plain_tok, PR_ROW, "prompt_response", template="alpaca",
                                                        system_prompt="Be brief."))
    assert prompt.startswith(EOS + "Be brief.\n\n" + ALPACA_HEAD)


# ------------------------------------------------------------------------------------ multi-turn chats

@pytest.mark.parametrize("template, chat", [("chat", True), ("chatml", False)])
def test_every_assistant_turn_is_learned_and_nothing_else(template, chat, chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    runs = spans(one_example(tokenizer, LONG_CHAT, "messages", template=template))
    learned = [tokenizer.decode(ids) for on, ids in runs if on]
    masked = [tokenizer.decode(ids) for on, ids in runs if not on]
    assert learned == ["Ahoy!" + END, "Buried on the island." + END]
    assert masked == [("" if chat else EOS) + "<|im_start|>system\nYou are a pirate." + END
                      + "<|im_start|>user\nHello" + END + "<|im_start|>assistant\n",
                      "<|im_start|>user\nWhere is the gold?" + END + "<|im_start|>assistant\n"]


def test_assistant_turns_last_learns_only_the_final_reply(chat_tok):
    runs = spans(one_example(chat_tok, LONG_CHAT, "messages", assistant_turns="last"))
    assert [on for on, _ in runs] == [False, True]
    assert chat_tok.decode(runs[1][1]) == "Buried on the island." + END
    assert "Ahoy!" in chat_tok.decode(runs[0][1])  # the earlier reply is context now


def test_turns_after_the_last_reply_are_left_out(chat_tok):
    trailing = {"messages": CHAT_ROW["messages"] + [{"role": "user", "content": "And then?"}]}
    example = one_example(chat_tok, trailing, "messages")
    assert example == one_example(chat_tok, CHAT_ROW, "messages")


# A template that shortens earlier replies once a later turn follows (as reasoning models drop
# their earlier thinking): a longer chat's text does not start with a shorter one's.
SHORTENING = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
              "{{ '<|im_start|>assistant\n(earlier)<|im_end|>\n' }}{% else %}"
              "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_a_template_that_rewrites_earlier_turns_needs_assistant_turns_last(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = SHORTENING
    with pytest.raises(DataError, match="earlier turns") as raised:
        tokenize_sft([LONG_CHAT], tokenizer, recipe(), "messages")
    assert "assistant_turns: last" in raised.value.hint
    runs = spans(one_example(tokenizer, LONG_CHAT, "messages", assistant_turns="last"))
    assert tokenizer.decode(runs[1][1]) == "Buried on the island." + END
    assert "(earlier)" in tokenizer.decode(runs[0][1])  # the prompt is what the template writes for it


# --------------------------------------------------------------- prompt_completion and sharegpt rows

@pytest.mark.parametrize("template, chat", [("chat", True), ("chatml", False), ("plain", False),
                                            ("alpaca", False), ("### Q: {prompt}\n### A: ", False)])
def test_standard_prompt_completion_trains_as_prompt_response(template, chat, chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    assert one_example(tokenizer, PC_ROW, "prompt_completion", template=template) == \
        one_example(tokenizer, PR_ROW, "prompt_response", template=template)


def test_standard_prompt_completion_masks_the_prompt_and_learns_completion_and_eos(plain_tok):
    example = one_example(plain_tok, PC_ROW, "prompt_completion", template="plain")
    assert prompt_and_reply(plain_tok, example) == (EOS + PC_ROW["prompt"] + "\n", PC_ROW["completion"] + EOS)


# TRL's conversational form: an earlier exchange in the prompt is context, only the completion is learned.
PC_CHAT = {"prompt": LONG_CHAT["messages"][:4], "completion": LONG_CHAT["messages"][4:]}


@pytest.mark.parametrize("template, chat", [("chat", True), ("chatml", False)])
def test_conversational_prompt_completion_learns_only_the_completion(template, chat, chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    runs = spans(one_example(tokenizer, PC_CHAT, "prompt_completion", template=template))
    assert [on for on, _ in runs] == [False, True]
    assert tokenizer.decode(runs[0][1]) == (("" if chat else EOS) + "<|im_start|>system\nYou are a pirate." + END
                                            + "<|im_start|>user\nHello" + END + "<|im_start|>assistant\nAhoy!" + END
                                            + "<|im_start|>user\nWhere is the gold?" + END
                                            + "<|im_start|>assistant\n")
    assert tokenizer.decode(runs[1][1]) == "Buried on the island." + END
    # The same tokens as the whole chat with only its last reply learned.
    assert one_example(tokenizer, PC_CHAT, "prompt_completion", template=template) == \
        one_example(tokenizer, LONG_CHAT, "messages", template=template, assistant_turns="last")


def test_conversational_prompt_completion_with_a_system_prompt_still_learns_only_the_completion(chat_tok):
    row = {"prompt": LONG_CHAT["messages"][1:4], "completion": LONG_CHAT["messages"][4:]}  # no system turn
    runs = spans(one_example(chat_tok, row, "prompt_completion", system_prompt="Be brief."))
    assert [on for on, _ in runs] == [False, True]
    assert chat_tok.decode(runs[0][1]).startswith("<|im_start|>system\nBe brief." + END)
    assert chat_tok.decode(runs[1][1]) == "Buried on the island." + END


def sharegpt(messages, **columns) -> dict:
    speaker = {"user": "human", "assistant": "gpt", "system": "system"}
    return {"conversations": [{"from": speaker[m["role"]], "value": m["content"]} for m in messages], **columns}


@pytest.mark.parametrize("template, chat", [("chat", True), ("chatml", False)])
def test_sharegpt_trains_exactly_as_the_same_messages(template, chat, chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    example = one_example(tokenizer, sharegpt(LONG_CHAT["messages"]), "sharegpt", template=template)
    assert example == one_example(tokenizer, LONG_CHAT, "messages", template=template)
    learned = [tokenizer.decode(ids) for on, ids in spans(example) if on]
    assert learned == ["Ahoy!" + END, "Buried on the island." + END]


def test_sharegpt_system_column_opens_the_chat_and_is_never_dropped(chat_tok):
    row = sharegpt(LONG_CHAT["messages"][1:], system="You are a pirate.")
    assert one_example(chat_tok, row, "sharegpt") == one_example(chat_tok, LONG_CHAT, "messages")
    # A recipe's system prompt does not replace the row's own.
    assert one_example(chat_tok, row, "sharegpt", system_prompt="Be brief.") == \
        one_example(chat_tok, LONG_CHAT, "messages")


def test_sharegpt_roles_map_other_spellings(chat_tok):
    row = {"conversations": [{"from": "user", "value": "Hello"}, {"from": "bot", "value": "Ahoy, matey!"}]}
    assert one_example(chat_tok, row, "sharegpt", roles={"user": "user", "bot": "assistant"}) == \
        one_example(chat_tok, CHAT_ROW, "messages")


@pytest.mark.parametrize("format, row, what", [
    ("prompt_completion", PC_CHAT, "conversational prompt/completion rows"),
    ("sharegpt", SHAREGPT_ROW, "sharegpt conversations"),
])
def test_chat_rows_of_the_new_formats_need_a_chat_template(format, row, what, plain_tok):
    with pytest.raises(DataError, match=f"{what} need a chat template: set data.template to chat or chatml"):
        tokenize_sft([row], plain_tok, recipe(template="plain"), format)


def test_a_chat_the_template_refuses_is_a_data_error(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system turns') }}"
                               "{% endif %}") + tokenizer.chat_template
    with pytest.raises(DataError, match="the chat template refuses a chat with turns system, user: no system turns"):
        tokenize_sft([LONG_CHAT], tokenizer, recipe(), "messages")


# ----------------------------------------------------------------------------- train_on_prompt, cuts

@pytest.mark.parametrize("format, template, chat", [("messages", "chat", True), ("alpaca", "alpaca", False),
                                                    ("prompt_response", "plain", False)])
def test_train_on_prompt_learns_every_token(format, template, chat, chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    row = LONG_CHAT if format == "messages" else ROWS[format]
    masked = one_example(tokenizer, row, format, template=template)
    example = one_example(tokenizer, row, format, template=template, train_on_prompt=True)
    assert example["input_ids"] == masked["input_ids"]
    assert example["labels"] == example["input_ids"]
    assert IGNORE_INDEX in masked["labels"]


def test_a_chat_is_kept_while_a_reply_survives_the_cut(chat_tok):
    full = one_example(chat_tok, LONG_CHAT, "messages")
    first_reply = next(i for i, label in enumerate(full["labels"]) if label != IGNORE_INDEX)
    # Cut inside the second prompt: only the first reply is learned.
    cut = tokenize_sft([LONG_CHAT], chat_tok, recipe(max_length=first_reply + 8), "messages")
    (example,) = cut.examples
    assert (cut.truncated, cut.dropped) == (1, 0)
    assert example["labels"] == full["labels"][: first_reply + 8]
    # Cut before the first reply: nothing to learn, dropped, with train_on_prompt as well.
    for on_prompt in (False, True):
        gone = tokenize_sft([LONG_CHAT], chat_tok, recipe(max_length=first_reply, train_on_prompt=on_prompt),
                            "messages")
        assert (gone.examples, gone.truncated, gone.dropped) == ([], 1, 1)


# ------------------------------------------------------------------------------------------- errors

def test_a_placeholder_for_a_missing_field_names_the_fields_the_data_has(plain_tok):
    rows = [PR_ROW, {"prompt": "Hi", "response": "Ahoy"}]
    with pytest.raises(DataError, match=r"train.jsonl: data.template names field\(s\) context, question") as raised:
        tokenize_sft(rows, plain_tok, recipe(template="{context}\nQ: {question}\nA: "), source="train.jsonl")
    assert "the data has: prompt, response" in str(raised.value)


def test_a_placeholder_for_a_list_field_is_an_error_not_its_repr(plain_tok):
    row = {**PR_ROW, "context": ["first fact", "second fact"]}
    with pytest.raises(DataError, match=r"data.template's \{context\} is a list in a row, not text"):
        tokenize_sft([row], plain_tok, recipe(template="{context}\nQ: {prompt}\nA: "))


def test_a_template_that_puts_the_response_in_the_prompt_is_an_error(plain_tok):
    with pytest.raises(DataError, match=r"\{response\}, the response, in the prompt"):
        tokenize_sft([PR_ROW], plain_tok, recipe(template="Q: {prompt}\nA: {response}"))


@pytest.mark.parametrize("template", ["plain", "alpaca", "auto", "User: {messages}\n"])
def test_messages_without_a_chat_template_are_an_error(template, plain_tok):
    with pytest.raises(DataError, match="messages need a chat template: set data.template to chat or chatml"):
        tokenize_sft([CHAT_ROW], plain_tok, recipe(template=template), "messages")


def test_chat_without_a_tokenizer_template_points_to_chatml(plain_tok):
    with pytest.raises(ModelError, match="has no chat template") as raised:
        tokenize_sft([PR_ROW], plain_tok, recipe(template="chat"))
    assert "chatml" in raised.value.hint


# ----------------------------------------------------------------- generation asks as training did

GENERATION_CASES = [
    ("prompt_response", "chat", True, "What is the capital of Peru?"),
    ("prompt_response", "chatml", False, "What is the capital of Peru?"),
    ("prompt_response", "plain", False, "What is the capital of Peru?"),
    ("prompt_response", "alpaca", False, "What is the capital of Peru?"),
    ("prompt_response", "### Q: {prompt}\n### A: ", False, "What is the capital of Peru?"),
    ("alpaca", "alpaca", False, "Name a sea."),
    ("alpaca", "Do: {instruction}\nWith: {input}\n=> ", False, "Name a sea."),
    ("alpaca", "chat", True, "Name a sea."),
    ("messages", "chatml", False, "Hello"),
    ("prompt_completion", "plain", False, "What is the capital of Peru?"),
    ("prompt_completion", "chat", True, "What is the capital of Peru?"),
    ("sharegpt", "chatml", False, "Hello"),
]


@pytest.mark.parametrize("format, template, chat, user_prompt", GENERATION_CASES,
                         ids=[f"{c[0]}-{c[1][:6]}" for c in GENERATION_CASES])
@pytest.mark.parametrize("system_prompt", [None, "Be brief."])
def test_generation_prompt_is_exactly_the_training_prompt(format, template, chat, user_prompt, system_prompt,
                                                          chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    data = {"template": template, "system_prompt": system_prompt}
    example = one_example(tokenizer, ROWS[format], format, **data)
    n_prompt = example["labels"].index(next(label for label in example["labels"] if label != IGNORE_INDEX))

    r = recipe(**data)  # the run's recipe, as load_for_generation sets generation up from it
    settings, chat_setting = generation_format(tokenizer, r.data, r.generate)
    text = format_generation_prompt(tokenizer, user_prompt, settings, chat_setting)
    assert prompt_token_ids(tokenizer, text) == example["input_ids"][:n_prompt]


def test_a_custom_template_without_a_prompt_slot_cannot_generate(plain_tok):
    r = recipe(template="Context: {context}\nAnswer: ")
    expected = "no placeholder for the prompt to generate from ({prompt} or {instruction})"
    with pytest.raises(UserError, match=re.escape(expected)):
        generation_format(plain_tok, r.data, r.generate)
    # ...unless generate.template says how to ask.
    own = r.generate.model_copy(update={"template": "Q: {prompt}\nA: "})
    assert generation_format(plain_tok, r.data, own)[0].template == "Q: {prompt}\nA: "


@pytest.mark.parametrize("format, row, template, chat, reference", [
    ("alpaca", ALPACA_INPUT_ROW, "alpaca", False, "That be 5."),
    ("alpaca", ALPACA_INPUT_ROW, "chat", True, "That be 5."),
    ("messages", LONG_CHAT, "chat", True, "Buried on the island."),
    ("prompt_completion", PC_CHAT, "chat", True, "Buried on the island."),
    ("prompt_completion", PC_ROW, "plain", False, "Arr, Lima be the capital."),
    ("sharegpt", SHAREGPT_ROW, "chatml", False, "Ahoy, matey!"),
    ("prompt_response", PR_ROW, "### Q: {prompt}\n### A: ", False, "Arr, Lima be the capital."),
])
def test_eval_prompt_is_the_training_prompt_of_the_last_reply(format, row, template, chat, reference,
                                                              chat_tok, plain_tok):
    tokenizer = chat_tok if chat else plain_tok
    r = recipe(template=template, assistant_turns="last")
    (example,) = tokenize_sft([row], tokenizer, r, format).examples
    n_prompt = example["labels"].index(next(label for label in example["labels"] if label != IGNORE_INDEX))
    prompt, expected = prompt_and_reference(row, r, format, tokenizer)
    assert expected == reference
    assert prompt_token_ids(tokenizer, prompt) == example["input_ids"][:n_prompt]


# ------------------------------------------------------------------------------------------- end to end

def test_finetune_on_chats_with_chatml_then_generate_and_eval(workdir, tiny_llama_plain):
    import ftcli
    from ftcli import runs
    from ftcli.generation.load import load_for_generation

    pairs = repo_rows("pirate", 24)
    chats = [{"messages": [{"role": "user", "content": a["prompt"]}, {"role": "assistant", "content": a["response"]},
                           {"role": "user", "content": b["prompt"]}, {"role": "assistant", "content": b["response"]}]}
             for a, b in zip(pairs[::2], pairs[1::2])]
    data = write_jsonl(workdir / "chats.jsonl", chats)
    run = ftcli.finetune(parse_recipe({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama_plain)},
        "data": {"train": str(data), "template": "chatml", "eval_fraction": 0.25, "max_length": 256},
        "train": {"output_dir": str(workdir / "runs/chat"), "max_steps": 3, "batch_size": 4, "logging_steps": 1},
        "eval": {"generate": True}, "generate": {"max_new_tokens": 4}}))

    results = runs.read_train_results(run)
    assert (results["mode"], results["format"], results["train_samples"]) == ("sft", "messages", 9)
    loaded = load_for_generation(run)
    assert "<|im_start|>" in loaded.chat  # the built-in ChatML, though the tokenizer has no template
    assert format_generation_prompt(loaded.tokenizer, "Hi", loaded.settings, loaded.chat) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert isinstance(ftcli.generate("Hi", run), str)

    report = ftcli.evaluate(run, base=False, limit=2)
    assert {"exact_match", "rouge1", "loss"} <= set(report["tuned"])
    sample = report["tuned_details"]["samples"][0]
    # Asked with the whole conversation before the last reply, scored against that reply.
    assert sample["prompt"].count("<|im_start|>user\n") == 2 and sample["prompt"].endswith("<|im_start|>assistant\n")
    assert sample["reference"] in {c["messages"][3]["content"] for c in chats}


@pytest.mark.parametrize("format", ["sharegpt", "prompt_completion"])
def test_finetune_on_sharegpt_and_conversational_prompt_completion_then_eval(format, workdir, tiny_llama):
    import ftcli
    from ftcli import runs

    pairs = repo_rows("pirate", 16)
    if format == "sharegpt":
        rows = [{"system": "Talk like a pirate.", "conversations": [{"from": "human", "value": p["prompt"]},
                                                                     {"from": "gpt", "value": p["response"]}]}
                for p in pairs]
    else:
        rows = [{"prompt": [{"role": "user", "content": p["prompt"]}],
                 "completion": [{"role": "assistant", "content": p["response"]}]} for p in pairs]
    data = write_jsonl(workdir / "rows.jsonl", rows)
    run = ftcli.finetune(parse_recipe({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": str(data), "eval_fraction": 0.25, "max_length": 256},
        "train": {"output_dir": str(workdir / "runs/x"), "max_steps": 2, "batch_size": 4},
        "eval": {"generate": True}, "generate": {"max_new_tokens": 4}}))
    results = runs.read_train_results(run)
    assert (results["mode"], results["format"], results["train_samples"]) == ("sft", format, 12)
    sample = ftcli.evaluate(run, base=False, limit=2)["tuned_details"]["samples"][0]
    # Asked as training rendered the chat before the reply, scored against that reply.
    assert sample["prompt"].endswith("<|im_start|>assistant\n")
    assert ("<|im_start|>system\nTalk like a pirate." in sample["prompt"]) == (format == "sharegpt")
    assert sample["reference"] in {p["response"] for p in pairs}
