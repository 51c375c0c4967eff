"""Streaming: training rows read lazily (never the whole file), cleaned as they go, and a real
training run on the tiny model that stops at max_steps."""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path

import pytest

from conftest import repo_rows
from ftcli.data.splits import load_splits
from ftcli.data.streaming import stream_rows
from ftcli.errors import DataError
from ftcli.recipe import parse_recipe


def recipe(train, eval_=None, task="causal-lm", max_steps=3, **data):
    data = {"train": str(train), "streaming": True, "eval_fraction": 0, **data}
    if eval_:
        data["eval"] = str(eval_)
    return parse_recipe({"task": task, "model": {"name_or_path": "m"}, "data": data,
                         "train": {"max_steps": max_steps, "batch_size": 2}})


def poisoned(path: Path, rows: list[dict], bad_at: int) -> Path:
    """A JSONL file whose line `bad_at` is broken JSON: reading that far raises a DataError, so a
    test that passes proves the reader stopped before it."""
    lines = [json.dumps(r) for r in rows]
    lines.insert(bad_at - 1, "{broken")
    body = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
    return path


def test_stream_rows_reads_lazily_and_cleans(tmp_path):
    rows = [{"text": f" line {i}\r\n"} if i % 10 else {"text": None} for i in range(1, 2000)]
    path = poisoned(tmp_path / "big.jsonl.gz", rows, bad_at=1500)
    counts: dict = {}
    first = list(islice(stream_rows(recipe(path), counts), 20))
    assert [r["text"] for r in first[:3]] == [" line 1\n", " line 2\n", " line 3\n"]
    assert len(first) == 20 and counts["incomplete"] == 2  # rows 10 and 20 had no text
    with pytest.raises(DataError, match="line 1500 is not valid JSON"):
        list(stream_rows(recipe(path)))  # the bad line is real: only laziness kept it unread


def test_stream_rows_reads_folders_csv_and_txt(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    (tmp_path / "d" / "b.csv").write_text("text\nthree\n", encoding="utf-8")
    assert [r["text"] for r in stream_rows(recipe(tmp_path / "d"))] == ["one", "two", "three"]


def test_streaming_splits_have_the_format_and_eval_but_no_train_rows(tmp_path):
    train = poisoned(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(300)], 250)
    ev = tmp_path / "e.jsonl"
    ev.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "", "response": "b"}\n', encoding="utf-8")
    splits = load_splits(recipe(train, ev))
    assert (splits.mode, splits.format, splits.train) == ("sft", "prompt_response", [])
    assert splits.eval == [{"prompt": "q", "response": "a"}] and splits.cleaning["eval"]["incomplete"] == 1


@pytest.mark.parametrize("change, problem", [
    ({"eval_fraction": 0.1}, "held-out split"),
    ({"dedup": True}, "data.dedup"),
    ({"max_train_samples": 5}, "max_train_samples"),
    ({"task": "sequence-classification"}, "classification"),
])
def test_what_streaming_cannot_do_is_an_error(tmp_path, change, problem):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": 1}\n', encoding="utf-8")
    change = dict(change)
    r = recipe(path, task=change.pop("task", "causal-lm"), **change)
    with pytest.raises(DataError, match=problem):
        load_splits(r)


def test_streaming_refuses_hub_mixes_and_whole_file_formats(tmp_path):
    (tmp_path / "t.json").write_text('[{"text": "a"}]', encoding="utf-8")
    with pytest.raises(DataError, match="cannot be read lazily"):
        load_splits(recipe(tmp_path / "t.json"))
    with pytest.raises(DataError, match="local file or folder"):
        load_splits(recipe("org/some-dataset"))
    mix = parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "train": {"max_steps": 2},
                        "data": {"train": [str(tmp_path / "t.json")] * 2, "streaming": True, "eval_fraction": 0}})
    with pytest.raises(DataError, match="no hub dataset, parallel text or mix"):
        load_splits(mix)


def test_streaming_training_run_stops_at_max_steps_without_reading_the_whole_file(workdir, tiny_llama):
    from ftcli.training.finetune import finetune

    rows = repo_rows("pirate", 40) * 25  # 1000 rows; training needs 3 steps x 2
    data = poisoned(workdir / "big.jsonl", rows, bad_at=900)
    r = parse_recipe({"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
                      "data": {"train": str(data), "streaming": True, "eval_fraction": 0, "max_length": 64},
                      "train": {"output_dir": str(workdir / "run"), "max_steps": 3, "batch_size": 2,
                                "logging_steps": 1, "save_total_limit": 1}})
    run = finetune(r)
    results = json.loads((run / "train_results.json").read_text())
    assert results["global_step"] == 3 and results["format"] == "prompt_response"
    assert 6 <= results["train_samples"] < 900
    assert results["data_cleaning"]["train"]["incomplete"] == 0
    assert (run / "model").is_dir()


def test_streaming_with_dataloader_workers_is_a_recipe_error(tmp_path):
    """Each worker would read the whole stream, and the counts would stay in the workers."""
    from ftcli.errors import RecipeError

    raw = {"task": "causal-lm", "model": {"name_or_path": "m"},
           "data": {"train": str(tmp_path / "t.jsonl"), "streaming": True, "eval_fraction": 0},
           "train": {"max_steps": 3, "dataloader_num_workers": 2}}
    with pytest.raises(RecipeError) as info:
        parse_recipe(raw)
    assert "train.dataloader_num_workers: 0" in str(info.value) and "data.streaming" in str(info.value)
    raw["train"]["dataloader_num_workers"] = 0
    assert parse_recipe(raw).train.dataloader_num_workers == 0


# ------------------------------------------------------------------ group_by_length on a stream

def streamed_examples(tmp_path, tiny_llama, group_by_length=True, seed=42, epoch=0, batch_size=4) -> list[list[int]]:
    import random

    from ftcli.data.prepare import prepare_splits
    from ftcli.modeling.load import load_tokenizer

    words = random.Random(0)
    path = tmp_path / "varied.jsonl"
    if not path.exists():  # texts of 1 to 60 words, in no order of length
        path.write_text("".join(json.dumps({"text": " ".join(["ahoy"] * words.randint(1, 60)) + f" {i}"}) + "\n"
                                for i in range(300)), encoding="utf-8")
    r = parse_recipe({"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
                      "data": {"train": str(path), "streaming": True, "eval_fraction": 0, "max_length": 256},
                      "train": {"max_steps": 3, "batch_size": 2, "gradient_accumulation_steps": batch_size // 2,
                                "group_by_length": group_by_length, "seed": seed}})
    stream, _ = prepare_splits(r, load_splits(r), load_tokenizer(r.model), None)
    stream.set_epoch(epoch)
    return [e["input_ids"] for e in stream]


def padding(examples: list[list[int]], batch_size: int = 4) -> int:
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    return sum(max(map(len, b)) * len(b) - sum(map(len, b)) for b in batches)


def test_streamed_batches_are_grouped_by_length(tmp_path, tiny_llama):
    plain = streamed_examples(tmp_path, tiny_llama, group_by_length=False)
    grouped = streamed_examples(tmp_path, tiny_llama)
    print(f"padding tokens in batches of 4: stream order {padding(plain)}, grouped {padding(grouped)}")
    assert padding(grouped) < padding(plain) / 4
    assert sorted(grouped) == sorted(plain) and len(plain) == 300  # every example exactly once
    assert streamed_examples(tmp_path, tiny_llama) == grouped  # the same seed and epoch: the same order
    for other in (streamed_examples(tmp_path, tiny_llama, seed=7), streamed_examples(tmp_path, tiny_llama, epoch=1)):
        assert other != grouped and sorted(other) == sorted(plain)


def test_a_short_last_batch_stays_last(tmp_path, tiny_llama):
    """300 examples in batches of 8 end on a batch of 4. Kept last, it leaves the boundaries of the
    batches before it where the training data loader cuts them: each is a slice of the sorted window."""
    grouped = streamed_examples(tmp_path, tiny_llama, batch_size=8)
    lengths = [[len(e) for e in grouped[i:i + 8]] for i in range(0, 300, 8)]
    assert len(lengths[-1]) == 4 and min(lengths[-1]) >= max(map(max, lengths[:-1]))  # the 4 longest
    spans = sorted((min(b), max(b)) for b in lengths[:-1])
    assert all(low[1] <= high[0] for low, high in zip(spans, spans[1:])), spans  # no two batches overlap


def test_the_trainer_tells_the_stream_its_epoch(tmp_path, tiny_llama):
    """Each pass is ordered by (seed, epoch): accelerate's data loader must hand the epoch on."""
    from ftcli.data.collators import PadCollator
    from ftcli.data.token_stream import TokenizedStream
    from ftcli.training.trainer import FtcliTrainer
    from transformers import AutoModelForCausalLM, TrainingArguments

    stream = TokenizedStream(lambda: iter([]), lambda rows: None, batch_size=2, seed=1)
    trainer = FtcliTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama), train_dataset=stream,
                           args=TrainingArguments(str(tmp_path / "run"), max_steps=1, report_to=[]),
                           data_collator=PadCollator(0))
    trainer.get_train_dataloader().set_epoch(5)  # what Trainer calls at the start of every epoch
    assert stream.epoch == 5
