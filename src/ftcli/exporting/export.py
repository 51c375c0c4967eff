"""Exporting a finished run: the merged model, the peft adapter, or a GGUF file, each with its model
card, optionally pushed to the Hugging Face Hub.

- merged: `<run>/model/` as it is (full weights, LoRA merged in, tokenizer): loads with
  `AutoModelFor...from_pretrained(DIR)`.
- adapter: `<run>/adapter/` plus the tokenizer files: loads with `PeftModel.from_pretrained(base, DIR)`
  and `AutoTokenizer.from_pretrained(DIR)`. LoRA runs only.
- gguf: one `.gguf` file for llama.cpp (Llama-family causal LMs), written by `exporting.gguf`, with the
  card beside it as `FILE.md` (and as `README.md` in what is pushed).

Files are copied byte for byte from the run (`folders`), so an export is exactly what training saved.
Every destination is written to a temporary sibling and renamed into place: complete or absent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

from ftcli import runs
from ftcli.errors import UserError
from ftcli.exporting.folders import gguf_card_path, gguf_module, link_or_copy, write_adapter, write_gguf, write_merged
from ftcli.exporting.hub import check_hub_ready, push_folder
from ftcli.exporting.model_card import CARD_FILE, write_card
from ftcli.progress import log
from ftcli.recipe import load_run_recipe, resolve_run

KINDS = ("merged", "adapter", "gguf")


GGUF_TYPES = ("f16", "q8_0", "f32")


# f16 by default: the faithful conversion (what llama.cpp's own converter writes by default, and the
# input its llama-quantize expects for any smaller type); q8_0 halves the file for a small loss.
DEFAULT_GGUF_TYPE = "f16"


GGUF_MODEL_TYPES = ("llama",)  # unless ftcli.exporting.gguf says otherwise (SUPPORTED_ARCHITECTURES)


class ExportResult(NamedTuple):
    kind: str  # merged | adapter | gguf
    path: Path | None  # the folder (or .gguf file) written; None when only pushed to the Hub
    files: list[str]  # what the export holds (a gguf export: the file and its card)
    repo_id: str | None = None  # the Hub repo pushed to, as the Hub names it (namespace/name)
    url: str | None = None


def _check_kind(run_dir: Path, recipe, kind: str) -> None:
    if kind == "adapter":
        if not (run_dir / runs.ADAPTER_DIR).is_dir():
            raise UserError(f"{run_dir} has no LoRA adapter ({runs.ADAPTER_DIR}/): it is a full fine-tune",
                            hint="export the whole model with --merged")
        if recipe.model.from_config is not None:
            raise UserError(f"{run_dir}: the adapter's base is a model built from its config, which exists "
                            "only inside ftcli", hint="export the whole model with --merged")
    if kind == "gguf":
        model_type = _model_type(run_dir)
        supported = _gguf_model_types()
        if recipe.task != "causal-lm" or model_type not in supported:
            raise UserError(f"GGUF export supports Llama-family causal language models ({', '.join(supported)}); "
                            f"{run_dir} is a {recipe.task} {model_type or 'unknown'} model",
                            hint="export it with --merged or --adapter instead")


def _model_type(run_dir: Path) -> str | None:
    import json

    try:
        return json.loads((run_dir / runs.MODEL_DIR / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def _gguf_model_types() -> tuple[str, ...]:
    try:
        module = gguf_module()
    except ModuleNotFoundError:  # not installed with this ftcli: the export itself says so
        return GGUF_MODEL_TYPES
    return tuple(getattr(module, "SUPPORTED_ARCHITECTURES", GGUF_MODEL_TYPES))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_destination(to: Path, run_dir: Path, overwrite: bool, is_file: bool) -> Path:
    """The destination, resolved; refuse places where writing (or --overwrite) could destroy the
    run itself or unrelated files."""
    resolved = Path(to).expanduser().resolve()
    if special := runs.special_place(resolved):
        raise UserError(f"refusing to export into {special} ({resolved})",
                        hint="name a new folder, such as exports/NAME")
    if _inside(run_dir, resolved):
        raise UserError(f"{resolved} holds the run {run_dir}; refusing to export over it",
                        hint="name a new folder outside the run")
    for kept in (runs.MODEL_DIR, runs.ADAPTER_DIR):
        if _inside(resolved, run_dir / kept):
            raise UserError(f"{resolved} is inside the run's {kept}/; refusing to write there",
                            hint="name a new folder outside it")
    if is_file:
        if resolved.suffix != ".gguf":
            raise UserError(f"the GGUF file name must end in .gguf (got {to})")
        if resolved.is_dir():
            raise UserError(f"{resolved} is a folder; --gguf takes a file name, e.g. {resolved / 'model.gguf'}")
        if resolved.exists() and not overwrite:
            raise UserError(f"{resolved} already exists", hint="pass --overwrite to replace it")
        return resolved
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"{resolved} is a file, not a folder")
    if resolved.is_dir() and any(resolved.iterdir()):
        if not overwrite:
            raise UserError(f"{resolved} already exists and is not empty", hint="pass --overwrite to replace it")
        if not any((resolved / name).is_file() for name in ("config.json", "adapter_config.json")):
            raise UserError(f"{resolved} holds files that are not an exported model; refusing to replace it",
                            hint="choose an empty or new folder")
    return resolved


def export(run: str | Path, to: str | Path | None = None, kind: str = "merged", *,
           gguf_type: str = DEFAULT_GGUF_TYPE, overwrite: bool = False, push_to_hub: str | None = None,
           private: bool = False, license: str | None = None, base_model: str | None = None,
           token: str | None = None) -> ExportResult:
    """Export a finished run (a run directory or its recipe file) as `kind`: "merged" (the full model
    with LoRA merged in, a folder), "adapter" (the peft adapter and tokenizer, a folder; LoRA runs)
    or "gguf" (`to` is the .gguf file; `gguf_type` f16 or q8_0). Every export carries a model card.
    `push_to_hub` uploads it to that Hub model repo (`to` may then be None: a temporary folder).
    `license` (a Hub licence id) and `base_model` (the base's Hub id, for a run trained from a local
    copy; also written into an exported adapter_config.json) override what the card infers."""
    if kind not in KINDS:
        raise UserError(f"unknown export kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "gguf" and gguf_type not in GGUF_TYPES:
        raise UserError(f"unknown GGUF type {gguf_type!r}: choose one of {', '.join(GGUF_TYPES)}")
    if to is None and not push_to_hub:
        raise UserError("say where to export: a folder (--to DIR), a file (--gguf FILE), or --push-to-hub REPO")
    run_dir = resolve_run(run)
    recipe = load_run_recipe(run_dir)
    _check_kind(run_dir, recipe, kind)
    dest = _check_destination(Path(to), run_dir, overwrite, is_file=kind == "gguf") if to is not None else None
    if push_to_hub:
        check_hub_ready(push_to_hub, token)
    # How the card tells a reader to load it: from the Hub repo when pushing, else from the export.
    card = {"license": license, "base_model": base_model,
            "where": push_to_hub or (str(dest.parent if kind == "gguf" else dest) if dest else None)}

    with tempfile.TemporaryDirectory(prefix="ftcli-export-") as scratch:
        scratch = Path(scratch)
        if kind == "gguf":
            gguf_file = dest or scratch / f"{run_dir.name}-{gguf_type}.gguf"
            card.update(gguf_name=gguf_file.name, gguf_type=gguf_type)
            log(f"writing GGUF ({gguf_type}) of {run_dir / runs.MODEL_DIR}")
            write_gguf(run_dir, gguf_file, gguf_type)
            # The card is written in a folder of its own, then put beside the file as NAME.md.
            card_dir = scratch / "card"
            card_dir.mkdir()
            card_text = write_card(run_dir, card_dir, "gguf", **card).read_text(encoding="utf-8")
            card_path = gguf_card_path(gguf_file)
            card_path.write_text(card_text, encoding="utf-8")
            files = [gguf_file.name, card_path.name]
            upload = scratch / "upload"
            if push_to_hub:
                upload.mkdir()
                link_or_copy(gguf_file, upload / gguf_file.name)
                (upload / CARD_FILE).write_text(card_text, encoding="utf-8")
            path = dest
        else:
            folder = dest or scratch / "export"
            if kind == "merged":
                write_merged(run_dir, folder, card)
            else:
                write_adapter(run_dir, folder, card, base_model)
            files = sorted(p.name for p in folder.iterdir())
            upload, path = folder, dest
        if path is not None:
            log(f"exported {kind} model of {run_dir.name} to {path}")
        if not push_to_hub:
            return ExportResult(kind, path, files)
        log(f"pushing to the Hugging Face Hub: {push_to_hub}")
        repo_id, url = push_folder(upload, push_to_hub, private=private, token=token,
                                   commit_message=f"Upload {kind} model exported by ftcli from {run_dir.name}")
        log(f"pushed to {url}")
        return ExportResult(kind, path, files, repo_id, url)
