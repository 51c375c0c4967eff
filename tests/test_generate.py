"""`ftcli generate`: prompt formats (chat, template, few-shot), batches, files, sampling, stop strings,
streaming, the interactive loop, --base/--model, and usage errors — on tiny models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_jsonl
from ftcli.cli import app
from ftcli.recipe import GenerateSection

runner = CliRunner()

QUESTIONS = ["What is the capital of Peru?", "Hi", "Tell me about the sea and the wind and the ships, please.",
             "Why is the sky blue?", "Name a fruit.", "What do pirates eat for breakfast on a long voyage?",
             "Count to three.", "Where is the treasure?"]


def cli(*args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(*args: str, input: str | None = None) -> str:
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llama) -> Path:
    """A tiny chat model fine-tuned (fully, 40 steps) on pirate answers, made once for the module."""
    from serve_fixtures import make_run

    return make_run(tmp_path_factory.mktemp("gen"), tiny_llama, name="sft", steps=40, logging_steps=10,
                    evaluate=False)


@pytest.fixture(scope="module")
def loaded(run):
    from ftcli.generation.load import load_for_generation

    return load_for_generation(run)


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


SHOTS = [{"prompt": "Hello there", "response": "Ahoy!"}, {"prompt": "Who are you?", "response": "A pirate."}]


# ------------------------------------------------------------------------------------------ formats

def test_chat_prompt_has_system_prompt_and_few_shot_turns_in_order(tiny_llama):
    from ftcli.generation.prompting import format_generation_prompt
    from ftcli.data.generation_prompts import format_prompt

    tokenizer = tokenizer_of(tiny_llama)
    settings = GenerateSection(system_prompt="You are a pirate.", few_shot=SHOTS)
    text = format_generation_prompt(tokenizer, "Where is the gold?", settings, chat=True)
    assert text == ("<|im_start|>system\nYou are a pirate.<|im_end|>\n"
                    "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\nAhoy!<|im_end|>\n"
                    "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nA pirate.<|im_end|>\n"
                    "<|im_start|>user\nWhere is the gold?<|im_end|>\n<|im_start|>assistant\n")
    # Zero-shot prompts are exactly what training used.
    zero = GenerateSection(system_prompt="You are a pirate.")
    assert format_generation_prompt(tokenizer, "Q?", zero, chat=True) == format_prompt(tokenizer, "Q?", "You are a pirate.")
    assert format_generation_prompt(tokenizer, "Q?", GenerateSection(), chat=False) == \
        format_prompt(tokenizer, "Q?", None, chat=False)


def test_plain_prompts_use_the_template_and_repeat_it_for_few_shot_examples(tiny_llama_plain):
    from ftcli.generation.prompting import format_generation_prompt

    tokenizer = tokenizer_of(tiny_llama_plain)
    template = GenerateSection(template="Q: {prompt}\nA:", few_shot=SHOTS)
    assert format_generation_prompt(tokenizer, "Where is the gold?", template, chat=False) == \
        "Q: Hello there\nA: Ahoy!\n\nQ: Who are you?\nA: A pirate.\n\nQ: Where is the gold?\nA:"
    assert format_generation_prompt(tokenizer, "x {y}", GenerateSection(template="<{prompt}>"), False) == "<x {y}>"
    # SFT plain format (prompt + newline, as trained) and plain continuation.
    shots = GenerateSection(few_shot=SHOTS[:1])
    assert format_generation_prompt(tokenizer, "Go", shots, chat=False, mode="sft") == "Hello there\nAhoy!\n\nGo\n"
    assert format_generation_prompt(tokenizer, "Go", shots, chat=False, mode="text") == "Hello there Ahoy!\n\nGo"


def test_few_shot_from_a_jsonl_file_relative_to_the_cwd(workdir, tiny_llama, run):
    from ftcli.generation.prompting import format_generation_prompt, settings_with

    write_jsonl(workdir / "shots" / "ex.jsonl", SHOTS)
    settings = settings_with(GenerateSection(), few_shot="shots/ex.jsonl")
    from_file = format_generation_prompt(tokenizer_of(tiny_llama), "Q", settings, chat=True)
    from_list = format_generation_prompt(tokenizer_of(tiny_llama), "Q", GenerateSection(few_shot=SHOTS), chat=True)
    assert from_file == from_list and "Who are you?" in from_file

    # Through the loader (what the CLI's --few-shot uses): read once, relative to the cwd.
    from ftcli.generation.load import load_for_generation

    loaded = load_for_generation(run, few_shot="shots/ex.jsonl")
    assert [e.prompt for e in loaded.settings.few_shot] == ["Hello there", "Who are you?"]
    assert ok("generate", "Where is the gold?", "--run", run, "--few-shot", "shots/ex.jsonl").strip()


@pytest.mark.parametrize("content, message", [
    (None, "few-shot file not found"),
    ("", "holds no examples"),
    ('{"prompt": "a"}\n', "needs string fields 'prompt' and 'response'"),
    ("not json\n", "not valid JSON"),
])
def test_bad_few_shot_files_are_user_errors(workdir, run, content, message):
    if content is not None:
        (workdir / "shots.jsonl").write_text(content, encoding="utf-8")
    result = cli("generate", "hi", "--run", run, "--few-shot", "shots.jsonl")
    assert result.exit_code == 2 and message in result.output


# ------------------------------------------------------------------------------------------ batches

def test_batched_greedy_output_equals_one_at_a_time(loaded):
    from ftcli.generation.batched import generate_texts, measure_throughput

    model, tokenizer, settings, chat, mode = loaded
    assert chat and mode == "sft"
    settings = settings.model_copy(update={"max_new_tokens": 16})
    single = [generate_texts(model, tokenizer, [q], settings, chat, 1)[0] for q in QUESTIONS]
    batched = generate_texts(model, tokenizer, QUESTIONS, settings, chat, batch_size=4)
    assert batched == single
    assert len(set(batched)) > 1 and all(batched)  # real, prompt-dependent answers

    # The speed-up itself is a benchmark figure (README), not a unit-test assertion: it depends on load.
    report = measure_throughput(model, tokenizer, QUESTIONS * 2, settings, chat, batch_size=16)
    assert report["same_texts"] and report["batched"]["tokens"] == report["single"]["tokens"] > 0
    assert report["speedup"] > 0


def test_file_of_prompts_txt_and_jsonl_keep_order_and_count(workdir, run):
    (workdir / "p.txt").write_text("\n".join([QUESTIONS[0], "", *QUESTIONS[1:5], "  "]) + "\n", encoding="utf-8")
    write_jsonl(workdir / "p.jsonl", [{"prompt": q, "id": i} for i, q in enumerate(QUESTIONS[:5])])
    singles = [ok("generate", q, "--run", run).rstrip("\n") for q in QUESTIONS[:5]]

    for name in ("p.txt", "p.jsonl"):
        lines = ok("generate", "--file", name, "--run", run, "--batch-size", "2").splitlines()
        rows = [json.loads(line) for line in lines]  # every line is one JSON object
        assert [r["prompt"] for r in rows] == QUESTIONS[:5]  # blank lines skipped, order kept
        assert [r["generated_text"] for r in rows] == singles

    result = cli("generate", "-f", "p.txt", "--run", run, "--output", "out.jsonl")
    assert result.exit_code == 0 and result.stdout == ""
    rows = [json.loads(line) for line in (workdir / "out.jsonl").read_text().splitlines()]
    assert [r["generated_text"] for r in rows] == singles


def test_several_answers_per_prompt(workdir, run):
    (workdir / "p.txt").write_text("Hi\nWhere is the treasure?\n", encoding="utf-8")
    rows = [json.loads(line) for line in ok("generate", "-f", "p.txt", "--run", run, "--temperature", "1",
                                            "-n", "3").splitlines()]
    assert len(rows) == 2 and all(isinstance(r["generated_text"], list) and len(r["generated_text"]) == 3
                                  for r in rows)
    single = ok("generate", "Hi", "--run", run, "--temperature", "1", "-n", "2", "--max-new-tokens", "6")
    assert single.count("\n---\n") == 1


# ------------------------------------------------------------------------------------------ decoding

def test_stop_strings_cut_the_output(loaded, run):
    from ftcli.generation.batched import generate_texts

    model, tokenizer, settings, chat, mode = loaded
    full = ok("generate", QUESTIONS[0], "--run", run, "--max-new-tokens", "20").strip()
    assert len(full) > 6, full
    stop = full[4:6]  # a string that occurs in the greedy answer
    expected = full[:full.find(stop)].strip()
    cut = ok("generate", QUESTIONS[0], "--run", run, "--max-new-tokens", "20", "--stop", stop,
             "--stop", "never-generated-zzz").strip()
    assert cut == expected and stop not in cut
    stopped = settings.model_copy(update={"max_new_tokens": 20, "stop": [stop]})
    assert generate_texts(model, tokenizer, [QUESTIONS[0]], stopped, chat, 1) == [expected]


def test_greedy_by_default_and_a_seed_makes_sampling_reproducible(run):
    assert ok("generate", "Hi", "--run", run) == ok("generate", "Hi", "--run", run)
    sample = ("generate", "Hi", "--run", run, "--temperature", "1.5", "--max-new-tokens", "10")
    assert ok(*sample, "--seed", "1") == ok(*sample, "--seed", "1")
    assert len({ok(*sample, "--seed", str(s)) for s in range(2, 7)}) > 1


def test_stream_prints_the_same_text(run):
    plain = ok("generate", QUESTIONS[0], "--run", run)
    streamed = ok("generate", QUESTIONS[0], "--run", run, "--stream")
    assert streamed.strip() == plain.strip() and streamed.strip()
    stop = plain.strip()[3:5]
    cut = ok("generate", QUESTIONS[0], "--run", run, "--stream", "--stop", stop)
    assert cut.strip() == plain.strip()[:plain.strip().find(stop)].strip()


def test_interactive_loop_keeps_the_conversation_until_exit(loaded, run):
    from ftcli.generation.batched import generate_ids
    from ftcli.generation.io import chat_loop
    from ftcli.generation.prompting import format_generation_prompt
    from ftcli.data.tokenize import prompt_token_ids

    out = io.StringIO()
    history = chat_loop(loaded, io.StringIO("Hi\n\nWhere is the treasure?\n/exit\nnever read\n"), out)
    assert [q for q, _ in history] == ["Hi", "Where is the treasure?"]
    assert out.getvalue().splitlines() == [a for _, a in history]
    # The second answer was generated with the first turn before it.
    model, tokenizer, settings, chat, mode = loaded
    text = format_generation_prompt(tokenizer, "Where is the treasure?", settings, chat, history=history[:1])
    assert text.count("<|im_start|>user") == 2
    (expected,), _ = generate_ids(model, tokenizer, [prompt_token_ids(tokenizer, text)], settings)
    assert history[1][1] == expected[0]

    result = cli("generate", "--interactive", "--run", run, input="Hi\nWhere is the treasure?\n")  # EOF ends it
    assert result.exit_code == 0 and result.stdout.splitlines() == out.getvalue().splitlines()


# ------------------------------------------------------------------------------------------ models

def test_base_and_model_options(workdir, run, tiny_llama, tiny_llama_plain):
    tuned = ok("generate", "Hi", "--run", run)
    base = ok("generate", "Hi", "--run", run, "--base")
    direct = ok("generate", "Hi", "--model", tiny_llama, "--max-new-tokens", "12")
    assert base == direct != tuned  # --base: the base weights, same tokenizer and chat format

    import ftcli

    assert ftcli.generate("Hi", run) == tuned.rstrip("\n")
    assert ftcli.generate("Hi", model=str(tiny_llama), max_new_tokens=12) == direct.rstrip("\n")

    from ftcli.generation.load import load_for_generation

    plain = load_for_generation(model=str(tiny_llama_plain), template="Q: {prompt}\nA:", max_new_tokens=4)
    assert not plain.chat and plain.mode == "text" and plain.settings.template == "Q: {prompt}\nA:"
    assert cli("generate", "Arr", "--model", tiny_llama_plain, "--template", "Q: {prompt}\nA:",
               "--max-new-tokens", "4").exit_code == 0


def test_a_classification_run_cannot_generate(workdir, run):
    fake = workdir / "cls"
    (fake / "model").mkdir(parents=True)
    (fake / "train_results.json").write_text("{}")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["task"] = "sequence-classification"
    recipe["eval"]["metrics"] = None
    (fake / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = cli("generate", "hi", "--run", fake)
    assert result.exit_code == 2 and "causal-lm" in result.output


@pytest.mark.parametrize("args, message", [
    ([], "give one of PROMPT, --file FILE or --interactive"),
    (["hi", "--file", "p.txt"], "give only one of PROMPT, --file"),
    (["--file", "missing.txt"], "prompts file not found"),
    (["--file", "empty.txt"], "holds no prompts"),
    (["--file", "bad.jsonl"], "needs a string field 'prompt'"),
    (["--file", "p.txt", "--stream"], "--stream"),
    (["hi", "--model", "x", "--run", "r"], "--model"),
    (["hi", "--model", "x", "--base"], "--model"),
    (["hi", "--model", "no/such/model-dir"], "model not found"),
    (["hi", "--temperature", "0", "-n", "2", "RUN"], "greedy"),
    (["hi", "--template", "no placeholder", "RUN"], "{prompt}"),
])
def test_usage_errors_exit_2(workdir, run, args, message):
    (workdir / "p.txt").write_text("hi\n")
    (workdir / "empty.txt").write_text("\n  \n")
    (workdir / "bad.jsonl").write_text('{"text": "hi"}\n')
    args = [a if a != "RUN" else "--run" for a in args] + ([str(run)] if "RUN" in args else [])
    result = cli("generate", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
