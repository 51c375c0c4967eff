"""What an export writes: a copy of the run's model or adapter folder (with the tokenizer and a card),
or a GGUF file, each complete or absent."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ftcli import runs
from ftcli.errors import UserError
from ftcli.exporting.model_card import write_card
from ftcli.io import write_dir
from ftcli.progress import Progress

_WEIGHT_FILES = ("config.json", "generation_config.json")


def _tokenizer_files(model_dir: Path) -> list[Path]:
    """Everything in a saved model folder except the model itself: the tokenizer's files."""
    return [p for p in sorted(model_dir.iterdir()) if p.is_file() and p.name not in _WEIGHT_FILES
            and p.name != "README.md" and ".safetensors" not in p.name
            and not p.name.startswith("pytorch_model") and not p.name.startswith(".")]


def _copy_tree(src: Path, dest: Path) -> None:
    """`src` copied byte for byte (hidden files left out), one progress step per file: a merged
    model's weights are gigabytes."""
    files = [p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                   p.relative_to(src).parts)]
    with Progress("files copied", len(files)) as progress:
        def copy(source, target):
            shutil.copy2(source, target)
            progress.advance()

        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".*"), copy_function=copy)


def write_merged(run_dir: Path, dest: Path, card: dict) -> None:
    def write(tmp: Path) -> None:
        _copy_tree(run_dir / runs.MODEL_DIR, tmp)
        write_card(run_dir, tmp, "model", **card)

    write_dir(write, dest)


def write_adapter(run_dir: Path, dest: Path, card: dict, base_model: str | None) -> None:
    def write(tmp: Path) -> None:
        _copy_tree(run_dir / runs.ADAPTER_DIR, tmp)
        for path in _tokenizer_files(run_dir / runs.MODEL_DIR):
            if not (tmp / path.name).exists():
                shutil.copy2(path, tmp / path.name)
        if base_model:  # the base as the Hub knows it, so AutoPeftModel finds it anywhere
            config_path = tmp / "adapter_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = base_model
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_card(run_dir, tmp, "adapter", **card)

    write_dir(write, dest)


def gguf_module():
    """`ftcli.exporting.gguf`, imported when needed: it needs the optional `gguf` package."""
    try:
        from ftcli.exporting import gguf
    except ModuleNotFoundError as exc:
        if exc.name == "gguf":
            raise UserError("GGUF export needs the `gguf` package", hint="pip install gguf") from None
        raise
    return gguf


def write_gguf(run_dir: Path, dest: Path, gguf_type: str) -> Path:
    """The GGUF file (export_gguf writes it to a temporary name and renames it into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(gguf_module().export_gguf(run_dir / runs.MODEL_DIR, dest, gguf_type))


def gguf_card_path(gguf_file: Path) -> Path:
    """The card written beside a GGUF file: `NAME.gguf` → `NAME.md`."""
    return Path(gguf_file).with_suffix(".md")


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
