"""What a person sees while ftcli works: a live bar on a terminal, readable lines in a file or CI log,
nothing with FTCLI_PROGRESS=off; always on stderr (stdout holds results), only on rank 0. For
finetune (step, epoch, loss, lr, tok/s, eta; a line per evaluation), eval, generate --file and export."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app
from ftcli.errors import UserError
from ftcli.progress import Progress, duration, log, number, progress_mode
from ftcli.training.display import learning_rate

STEP_LINE = re.compile(r"\[ftcli\] step (\d+)/4  epoch \d\.\d\d  loss \d+\.\d+  lr \d\.\de-\d  [\d,]+ tok/s  "
                       r"(eta \d+s|in \d+s)$")
EVAL_LINE = re.compile(r"\[ftcli\] eval step (\d+)  loss \d+\.\d+  perplexity \d+\.\d$")
TRAINER_DICT = re.compile(r"\{'(loss|eval_loss|train_runtime)'")


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def cli(*args: str, mode: str):
    result = CliRunner().invoke(app, list(args), env={"FTCLI_PROGRESS": mode})
    assert result.exit_code == 0, result.output
    return result


# ---------------------------------------------------------------- choosing the mode

def test_bar_on_a_terminal_lines_otherwise(monkeypatch):
    monkeypatch.delenv("FTCLI_PROGRESS", raising=False)
    assert progress_mode(Stream(tty=True)) == "bar"
    assert progress_mode(Stream(tty=False)) == "lines"
    assert progress_mode(object()) == "lines"  # a stream without isatty is no terminal


@pytest.mark.parametrize("value, mode", [("bar", "bar"), ("LINES", "lines"), (" off ", "off")])
def test_the_environment_overrides_the_terminal(monkeypatch, value, mode):
    monkeypatch.setenv("FTCLI_PROGRESS", value)
    assert progress_mode(Stream(tty=True)) == mode and progress_mode(Stream(tty=False)) == mode


def test_a_bad_mode_is_a_user_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FTCLI_PROGRESS", "fancy")
    with pytest.raises(UserError, match="FTCLI_PROGRESS='fancy'") as caught:
        progress_mode(Stream(tty=True))
    assert "bar, lines, off" in caught.value.hint


def test_only_rank_0_shows_progress(monkeypatch, capsys):
    monkeypatch.setenv("FTCLI_PROGRESS", "lines")
    monkeypatch.setenv("RANK", "1")
    assert progress_mode(Stream(tty=True)) == "off"
    with Progress("things", 3) as progress:
        for _ in range(3):
            progress.advance()
    log("a message")
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- Progress itself

def test_lines_come_about_every_tenth_and_at_the_end(capsys):
    with Progress("things", 25, mode="lines") as progress:
        for done in range(1, 26):
            progress.update(done)
    lines = capsys.readouterr().err.splitlines()
    assert [int(re.match(r"\[ftcli\] things (\d+)/25", line).group(1)) for line in lines] == \
        [3, 6, 9, 12, 15, 18, 21, 24, 25]
    assert all("eta " in line for line in lines[:-1]) and re.search(r"  in \d+s$", lines[-1])


def test_off_shows_nothing_and_bar_draws_on_stderr_only(capsys):
    with Progress("things", 4, mode="off") as progress:
        progress.update(4, "quiet")
    assert capsys.readouterr() == ("", "")
    with Progress("things", 4, mode="bar", leave=True) as progress:
        progress.update(2, "half")
        log("a message while the bar is open")
        progress.update(4, "whole")
    out, err = capsys.readouterr()
    assert out == "" and "\r" in err and "things 4/4  whole" in err
    assert "\n[ftcli] a message while the bar is open\n" in err.replace("\r", "\n")  # on a line of its own


def test_durations_and_numbers_read_at_a_glance():
    assert [duration(s) for s in (4.4, 100, 3725)] == ["4s", "1m40s", "1h02m"]
    assert [number(v) for v in (5.407, 4.4, 0.03123, 134.28, 2e-5)] == ["5.41", "4.40", "0.0312", "134.3", "2.0e-05"]
    assert learning_rate(0.0043) == "4.3e-3"


# ---------------------------------------------------------------- finetune through the CLI

def _recipe(root: Path, tiny_llama: Path, name: str) -> Path:
    data = write_jsonl(root / "train.jsonl", repo_rows("pirate", 40))
    path = root / f"{name}.yaml"
    # 32 training rows, batch 8: 4 steps are exactly one epoch.
    path.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
        "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 96},
        "train": {"output_dir": str(root / "runs" / name), "max_steps": 4, "batch_size": 8,
                  "learning_rate": 5e-3, "logging_steps": 2, "eval_strategy": "steps", "eval_steps": 2,
                  "save_steps": 2},
    }), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lines_run(tmp_path_factory, tiny_llama):
    """One tiny run trained with FTCLI_PROGRESS=lines: (its recipe, the CLI result)."""
    root = tmp_path_factory.mktemp("progress").resolve()
    recipe = _recipe(root, tiny_llama, "lines")
    return recipe, cli("finetune", str(recipe), mode="lines")


def test_finetune_lines_show_step_loss_lr_tokens_and_eval(lines_run):
    _, result = lines_run
    assert not TRAINER_DICT.search(result.output)  # Trainer's own printed dicts are gone
    assert result.stdout.startswith("run finished:")  # stdout: the result only
    steps = [int(m.group(1)) for line in result.stderr.splitlines() if (m := STEP_LINE.match(line))]
    evals = [int(m.group(1)) for line in result.stderr.splitlines() if (m := EVAL_LINE.match(line))]
    assert steps == [2, 4] and evals == [2, 4]
    # A log file gets lines, not redrawn bars: not even transformers' own for the checkpoint at step 2.
    assert (Path(yaml.safe_load(lines_run[0].read_text())["train"]["output_dir"]) / "checkpoint-2").is_dir()
    training = result.stderr[result.stderr.index("[ftcli] step 2/4"):result.stderr.index("[ftcli] step 4/4")]
    assert "\r" not in training and "Writing model shards" not in training


def test_tokens_per_second_counts_the_non_padding_tokens(lines_run):
    from ftcli.recipe import load_recipe
    from ftcli.training.preflight import prepare_data

    recipe_path, _ = lines_run
    recipe = load_recipe(recipe_path)
    examples = prepare_data(recipe, lambda message: None).train_set.examples
    results = json.loads((Path(recipe.train.output_dir) / "train_results.json").read_text())
    # One epoch exactly: every training token once, and no padding.
    assert results["num_input_tokens_seen"] == sum(len(e["input_ids"]) for e in examples)


def test_packed_rows_count_every_token_even_where_pad_is_eos(tmp_path, tiny_llama_plain, monkeypatch):
    import ftcli
    from ftcli.recipe import load_recipe
    from ftcli.training.preflight import prepare_data

    monkeypatch.setenv("FTCLI_PROGRESS", "off")
    rows = [{"text": row["response"]} for row in repo_rows("pirate", 32)]
    path = tmp_path / "packed.yaml"
    path.write_text(yaml.safe_dump({
        "task": "causal-lm", "model": {"name_or_path": str(tiny_llama_plain)},
        "data": {"train": str(write_jsonl(tmp_path / "text.jsonl", rows)), "eval_fraction": 0.0,
                 "max_length": 64, "packing": True},
        "train": {"output_dir": str(tmp_path / "runs" / "packed"), "max_steps": 4, "batch_size": 8,
                  "logging_steps": 2, "report_to": []},
    }), encoding="utf-8")
    run = ftcli.finetune(path)
    data = prepare_data(load_recipe(path), lambda message: None)
    examples, eos = data.train_set.examples, data.tokenizer.eos_token_id
    # Texts end in EOS (unless cut at max_length), and EOS is this tokenizer's pad token too.
    assert eos == data.tokenizer.pad_token_id and sum(e["input_ids"].count(eos) for e in examples) > 20
    results = json.loads((Path(run) / "train_results.json").read_text())
    assert results["num_input_tokens_seen"] == sum(len(e["input_ids"]) for e in examples)


def test_finetune_bar_shows_the_same_fields_live(tmp_path, tiny_llama):
    result = cli("finetune", str(_recipe(tmp_path.resolve(), tiny_llama, "bar")), mode="bar")
    assert not TRAINER_DICT.search(result.output) and result.stdout.startswith("run finished:")
    drawn = result.stderr.split("\r")
    assert len(drawn) > 4  # redrawn in place
    final = [d for d in drawn if d.startswith("|") and "step 4/4" in d][-1]
    assert re.search(r"step 4/4  epoch 1\.00  loss \d+\.\d+  lr \d\.\de-\d  [\d,]+ tok/s  in \d+s", final)
    # Eval results are written above the bar, each on a line of its own.
    assert re.search(r"\r\[ftcli\] eval step 4  loss \d+\.\d+  perplexity \d+\.\d\n", result.stderr)


def test_finetune_off_shows_no_progress(tmp_path, tiny_llama):
    result = cli("finetune", str(_recipe(tmp_path.resolve(), tiny_llama, "off")), mode="off")
    assert "step " not in result.stderr and "eval step" not in result.stderr
    assert "[ftcli] done: train_loss" in result.stderr  # messages still come


# ---------------------------------------------------------------- eval, generate, export

@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_eval_json_stays_clean_while_batches_show(lines_run, mode):
    recipe, _ = lines_run
    result = cli("eval", str(recipe), "--json", mode=mode)
    report = json.loads(result.stdout)  # nothing else on stdout
    assert set(report) == {"run", "tuned", "base"}
    if mode == "lines":
        assert re.search(r"^\[ftcli\] tuned: batch 1/1  in \d+s$", result.stderr, re.M)
        assert re.search(r"^\[ftcli\] base: batch 1/1  in \d+s$", result.stderr, re.M)
    else:
        assert "\r|" in result.stderr and "tuned: batch" in result.stderr


def test_generate_file_shows_prompts_done(lines_run, tmp_path):
    recipe, _ = lines_run
    (tmp_path / "p.txt").write_text("".join(f"Question {i}?\n" for i in range(4)), encoding="utf-8")
    result = cli("generate", "--recipe", str(recipe), "--file", str(tmp_path / "p.txt"), "--batch-size", "1",
                 "--max-new-tokens", "3", mode="lines")
    assert [json.loads(line)["prompt"] for line in result.stdout.splitlines()] == [f"Question {i}?" for i in range(4)]
    done = re.findall(r"^\[ftcli\] generated (\d)/4", result.stderr, re.M)
    assert done == ["1", "2", "3", "4"]  # after every batch, not once at the end


def test_export_shows_files_copied_and_gguf_tensors(lines_run, tmp_path):
    pytest.importorskip("gguf")
    recipe, _ = lines_run
    run = Path(yaml.safe_load(recipe.read_text())["train"]["output_dir"])
    merged = cli("export", str(run), "--merged", "--to", str(tmp_path / "merged"), mode="lines")
    files = len([p for p in (run / "model").iterdir() if not p.name.startswith(".")])
    assert re.search(rf"^\[ftcli\] files copied {files}/{files}  in \d+s$", merged.stderr, re.M)
    gguf = cli("export", str(run), "--gguf", str(tmp_path / "m.gguf"), mode="lines")
    tensors = re.findall(r"^\[ftcli\] GGUF tensors (\d+)/(\d+)", gguf.stderr, re.M)
    assert tensors and tensors[-1][0] == tensors[-1][1] == "20"  # 2 layers x 9, embedding, final norm
    assert "\r" not in gguf.stderr
