"""Model sources and atomic saves (no weights loaded)."""

from __future__ import annotations

import pytest

from ftcli.errors import ModelError
from ftcli.modeling.load import check_model_source
from ftcli.io import write_dir


def test_a_typo_under_an_existing_folder_is_a_missing_local_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match="model not found: models/tiny-lama") as info:
        check_model_source("models/tiny-lama")
    assert "make models" in info.value.hint


def test_a_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        check_model_source(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert "local directory" in check_model_source(str(tmp_path))


def test_a_run_that_is_not_a_model_says_what_to_do(tmp_path):
    run = tmp_path / "runs" / "pretrain"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "recipe.yaml").write_text("task: causal-lm\n")
    with pytest.raises(ModelError, match="no config.json") as info:
        check_model_source(str(run))
    assert "has not finished" in info.value.hint and "ftcli finetune" in info.value.hint
    (run / "model").mkdir()
    (run / "train_results.json").write_text("{}")
    with pytest.raises(ModelError, match="no config.json") as info:
        check_model_source(str(run))  # a finished run given as a model directory (e.g. generate --model)
    assert f"its model is {run / 'model'}" in info.value.hint
    with pytest.raises(ModelError) as info:
        check_model_source(str(tmp_path / "runs"))  # not a run at all
    assert "has not finished" not in info.value.hint and "saved Hugging Face model" in info.value.hint


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found: .*model.gguf"):
        check_model_source(str(tmp_path), "model.gguf")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert "GGUF" in check_model_source(str(tmp_path), "model.gguf")


def test_an_unreachable_hub_id_says_to_use_a_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="could not be loaded from the Hugging Face Hub") as info:
        check_model_source("some-org/some-model-that-is-not-cached")
    assert "local path" in info.value.hint


def test_save_atomically_replaces_only_on_success(tmp_path):
    final = tmp_path / "model"

    def good(path):
        path.mkdir()
        (path / "weights").write_text("v1")

    write_dir(good, final)
    assert (final / "weights").read_text() == "v1"

    def dies_halfway(path):
        path.mkdir()
        (path / "weights").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_dir(dies_halfway, final)
    assert (final / "weights").read_text() == "v1"  # the complete model survives a failed save
