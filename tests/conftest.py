"""Shared fixtures: tiny models (built once per session) and small data files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tiny_models import build_bert, build_llama, build_t5

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach the network: a hub lookup fails at once instead of waiting for a timeout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Tokenized-data cache in a temporary folder: tests never read or fill the user's ~/.cache."""
    previous = os.environ.get("FTCLI_CACHE_DIR")
    os.environ["FTCLI_CACHE_DIR"] = str(tmp_path_factory.mktemp("ftcli-cache"))
    yield
    if previous is None:
        os.environ.pop("FTCLI_CACHE_DIR", None)
    else:
        os.environ["FTCLI_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama with a chat template (ChatML) and a ~400-token BPE vocabulary."""
    return build_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_llama_plain(tmp_path_factory) -> Path:
    """The same without a chat template: a base model that continues plain text."""
    return build_llama(tmp_path_factory.mktemp("models") / "tiny-llama-plain", chat=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    """A T5 encoder-decoder (2+2 layers) whose tokenizer appends </s>; pad (id 0) starts decoding."""
    return build_t5(tmp_path_factory.mktemp("models") / "tiny-t5")


def repo_rows(name: str, n: int | None = None) -> list[dict]:
    lines = (REPO / "data" / name / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def shared_data(relative: str) -> Path:
    """A file from ../shared/data, or skip: a user's clone has no ../shared."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"public data not found at {path} (only present on the project's own machines)")
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh current directory, as a user's project folder."""
    tmp_path = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def recipe_problems(raw: dict) -> list[str]:
    """The problems parse_recipe reports for `raw` (it must refuse it)."""
    from ftcli.errors import RecipeError
    from ftcli.recipe import parse_recipe

    with pytest.raises(RecipeError) as caught:
        parse_recipe(raw)
    return caught.value.problems
