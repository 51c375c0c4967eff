"""`ftcli data preview`: formatted, tokenized examples with loss-ignored text marked, and lengths."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.data.preview import IGNORED_CLOSE, IGNORED_OPEN, length_summary
from ftcli.training.preflight import preview_data
from ftcli.recipe import parse_recipe

runner = CliRunner()


def _recipe(workdir, model, rows, task="causal-lm", **data):
    path = write_jsonl(workdir / "train.jsonl", rows)
    raw = {"task": task, "model": {"name_or_path": str(model)}, "data": {"train": str(path), **data}}
    (workdir / "r.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return workdir / "r.yaml", parse_recipe(raw)


def test_sft_preview_marks_exactly_the_prompt_as_ignored(workdir, tiny_llama):
    rows = repo_rows("pirate", 20)
    _, recipe = _recipe(workdir, tiny_llama, rows, eval_fraction=0)
    preview = preview_data(recipe, n=2)
    assert len(preview.examples) == 2 and preview.train_rows == 20
    first = preview.examples[0]
    ignored = "".join(text for text, trained in first.segments if not trained)
    trained = "".join(text for text, trained in first.segments if trained)
    assert rows[0]["prompt"] in ignored and rows[0]["prompt"] not in trained
    assert trained.startswith(rows[0]["response"])  # the response (then its end-of-turn) is learned
    assert first.trained_tokens < first.tokens
    assert len(preview.lengths) == 20 and max(preview.lengths) <= recipe.data.max_length


def test_cli_preview_prints_marked_examples_and_the_length_distribution(workdir, tiny_llama):
    rows = repo_rows("pirate", 12)
    path, _ = _recipe(workdir, tiny_llama, rows, eval_fraction=0)
    result = runner.invoke(app, ["data", "preview", str(path), "-n", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("--- example") == 1
    assert f"{IGNORED_OPEN}<|im_start|>user\n{rows[0]['prompt']}" in out
    assert f"{IGNORED_CLOSE}{rows[0]['response']}" in out
    assert "tokens per example: n=12" in out


def test_train_on_prompt_preview_has_nothing_ignored(workdir, tiny_llama):
    _, recipe = _recipe(workdir, tiny_llama, repo_rows("pirate", 8), eval_fraction=0, train_on_prompt=True)
    example = preview_data(recipe, n=1).examples[0]
    assert all(trained for _, trained in example.segments)
    assert example.trained_tokens == example.tokens


def test_classification_preview_shows_text_and_label(workdir, tiny_bert):
    rows = repo_rows("reviews", 10)
    path, _ = _recipe(workdir, tiny_bert, rows, task="sequence-classification", eval_fraction=0)
    result = runner.invoke(app, ["data", "preview", str(path), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert f"label: {rows[0]['label']}" in result.stdout
    assert "[CLS]" in result.stdout  # the input exactly as the model sees it, special tokens included


def test_preview_of_bad_data_is_a_short_user_error(workdir, tiny_llama):
    path, _ = _recipe(workdir, tiny_llama, [{"question": "q", "answer": "a"}])
    result = runner.invoke(app, ["data", "preview", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "the data has: question, answer" in result.output


def test_length_summary_percentiles_and_histogram():
    lines = length_summary(list(range(1, 101)), max_length=128, bins=4, width=10)
    assert lines[0].startswith("tokens per example: n=100  min=1  p50=51  p90=90  p99=99  max=100")
    assert [int(line.split()[1]) for line in lines[1:]] == [25, 25, 25, 25]


def test_seq2seq_preview_shows_prefixed_source_target_and_what_cleaning_removed(workdir, tiny_t5):
    rows = [{"prompt": "the red dog sleeps", "response": "der rot hund schläft"}, {"prompt": "a cat", "response": "ein katze"},
            {"prompt": "the red dog sleeps", "response": "der rot hund schläft"},  # duplicate
            {"prompt": "a man", "response": ""},  # incomplete
            {"prompt": "the child", "response": "der kind"}, {"prompt": "a big house", "response": "ein groß haus"}]
    path, _ = _recipe(workdir, tiny_t5, rows, task="seq2seq", eval_fraction=0, dedup=True,
                      source_prefix="translate: ")
    result = runner.invoke(app, ["data", "preview", str(path)])  # the default: 3 examples
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "task seq2seq (seq2seq): 4 training rows, 0 eval rows" in out
    assert "cleaning (train): incomplete 1, duplicates 1\n" in out
    assert out.count("--- example") == 3
    # The encoder's input as training tokenized it (prefix first, T5's </s> last), then the decoder's target.
    assert "source: translate: the red dog sleeps</s>\ntarget: der rot hund schläft</s>\n" in out
    assert "source: translate: a cat</s>\ntarget: ein katze</s>\n" in out
    assert IGNORED_OPEN not in out  # the target is the whole label: nothing inside the source is marked


def test_multi_turn_chat_preview_marks_every_prompt_and_trains_every_reply(workdir, tiny_llama):
    chat = {"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Arr, a pirate!"},
                         {"role": "user", "content": "Where is the ship?"},
                         {"role": "assistant", "content": "In the harbour, matey."}]}
    path, _ = _recipe(workdir, tiny_llama, [chat], eval_fraction=0)
    result = runner.invoke(app, ["data", "preview", str(path)])
    assert result.exit_code == 0, result.output
    assert "task causal-lm (messages): 1 training rows" in result.stdout
    assert (f"{IGNORED_OPEN}<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n{IGNORED_CLOSE}"
            f"Arr, a pirate!<|im_end|>\n"
            f"{IGNORED_OPEN}<|im_start|>user\nWhere is the ship?<|im_end|>\n<|im_start|>assistant\n{IGNORED_CLOSE}"
            f"In the harbour, matey.<|im_end|>\n") in result.stdout
    assert "cleaning (" not in result.stdout  # nothing removed: no cleaning line


def test_sharegpt_and_conversational_prompt_completion_previews_mark_what_is_ignored(workdir, tiny_llama):
    sharegpt = {"system": "Be a pirate.", "conversations": [{"from": "human", "value": "Who are you?"},
                                                             {"from": "gpt", "value": "Arr, a pirate!"}]}
    conversational = {"prompt": [{"role": "user", "content": "Who are you?"},
                                 {"role": "assistant", "content": "Arr, a pirate!"},
                                 {"role": "user", "content": "Where is the ship?"}],
                      "completion": [{"role": "assistant", "content": "In the harbour, matey."}]}
    expected = {
        "sharegpt": f"{IGNORED_OPEN}<|im_start|>system\nBe a pirate.<|im_end|>\n<|im_start|>user\nWho are you?"
                    f"<|im_end|>\n<|im_start|>assistant\n{IGNORED_CLOSE}Arr, a pirate!<|im_end|>\n",
        "prompt_completion": f"{IGNORED_OPEN}<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
                             f"Arr, a pirate!<|im_end|>\n<|im_start|>user\nWhere is the ship?<|im_end|>\n"
                             f"<|im_start|>assistant\n{IGNORED_CLOSE}In the harbour, matey.<|im_end|>\n"}
    for fmt, row in (("sharegpt", sharegpt), ("prompt_completion", conversational)):
        path, _ = _recipe(workdir, tiny_llama, [row], eval_fraction=0)
        result = runner.invoke(app, ["data", "preview", str(path)])
        assert result.exit_code == 0, result.output
        assert f"task causal-lm ({fmt}): 1 training rows" in result.stdout
        assert expected[fmt] in result.stdout


def test_a_chat_opening_with_the_assistant_is_a_user_error_naming_file_and_row(workdir, tiny_llama):
    opening = {"messages": [{"role": "assistant", "content": "Ahoy!"}, {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Arr."}]}
    good = {"messages": opening["messages"][1:]}
    path, recipe = _recipe(workdir, tiny_llama, [good, opening], eval_fraction=0)
    for command in (["data", "preview", str(path)], ["validate", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"{recipe.data.train}: row 2: 'messages' opens with an assistant turn" in result.output
        assert "Traceback" not in result.output


def test_validate_refuses_chats_without_a_chat_template_as_finetune_does(workdir, tiny_llama_plain):
    import ftcli
    from ftcli.errors import DataError

    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}
    path, recipe = _recipe(workdir, tiny_llama_plain, [chat] * 4, eval_fraction=0)
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"output_dir": str(workdir / "run")})})
    errors = []
    for command in (ftcli.validate, ftcli.finetune):
        with pytest.raises(DataError) as info:
            command(recipe)
        errors.append(info.value.message)
    assert errors[0] == errors[1] == (f"{recipe.data.train}: messages need a chat template: set data.template "
                                      "to chat or chatml (it is 'auto')")
    assert not (workdir / "run").exists()
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "messages need a chat template" in result.output


@pytest.mark.parametrize("template, said", [
    ("auto", "plain (prompt, newline, response) (data.template auto: the tokenizer has no chat template)"),
    ("chatml", "ChatML (built in)"),
    ("alpaca", "the Alpaca prompt"),
])
def test_validate_says_which_prompt_format_a_run_uses(workdir, tiny_llama_plain, template, said):
    path, _ = _recipe(workdir, tiny_llama_plain, repo_rows("pirate", 4), eval_fraction=0, template=template)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"prompt: {said}\n" in result.stdout
