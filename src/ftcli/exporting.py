"""Exporting a finished run: the merged model, the peft adapter, or a GGUF file, each with its model
card, optionally pushed to the Hugging Face Hub.

- merged: `<run>/model/` as it is (full weights, LoRA merged in, tokenizer): loads with
  `AutoModelFor...from_pretrained(DIR)`.
- adapter: `<run>/adapter/` plus the tokenizer files: loads with `PeftModel.from_pretrained(base, DIR)`
  and `AutoTokenizer.from_pretrained(DIR)`. LoRA runs only.
- gguf: one `.gguf` file for llama.cpp (Llama-family causal LMs), written by `ftcli.gguf_export`,
  with the card beside it as `FILE.md` (and as `README.md` in what is pushed).

Files are copied byte for byte from the run, so an export is exactly what training saved. Every
destination is written to a temporary sibling and renamed into place: complete or absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from ftcli import runs
from ftcli.errors import UserError
from ftcli.progress import log

KINDS = ("merged", "adapter", "gguf")
GGUF_TYPES = ("f16", "q8_0", "f32")
# f16 by default: the faithful conversion (what llama.cpp's own converter writes by default, and the
# input its llama-quantize expects for any smaller type); q8_0 halves the file for a small loss.
DEFAULT_GGUF_TYPE = "f16"
GGUF_MODEL_TYPES = ("llama",)  # unless ftcli.gguf_export says otherwise (SUPPORTED_ARCHITECTURES)
_WEIGHT_FILES = ("config.json", "generation_config.json")


class ExportResult(NamedTuple):
    kind: str  # merged | adapter | gguf
    path: Path | None  # the folder (or .gguf file) written; None when only pushed to the Hub
    files: list[str]  # what the export holds (a gguf export: the file and its card)
    repo_id: str | None = None  # the Hub repo pushed to, as the Hub names it (namespace/name)
    url: str | None = None


# --- checks ---------------------------------------------------------------------------------------

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


def _gguf_module():
    try:
        from ftcli import gguf_export
    except ModuleNotFoundError as exc:
        if exc.name == "gguf":
            raise UserError("GGUF export needs the `gguf` package", hint="pip install gguf") from None
        raise
    return gguf_export


def _gguf_model_types() -> tuple[str, ...]:
    try:
        module = _gguf_module()
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


# --- writing --------------------------------------------------------------------------------------

def _tokenizer_files(model_dir: Path) -> list[Path]:
    """Everything in a saved model folder except the model itself: the tokenizer's files."""
    return [p for p in sorted(model_dir.iterdir()) if p.is_file() and p.name not in _WEIGHT_FILES
            and p.name != "README.md" and ".safetensors" not in p.name
            and not p.name.startswith("pytorch_model") and not p.name.startswith(".")]


def _atomic_dir(write, final: Path) -> None:
    from ftcli.modeling import save_atomically

    final.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(write, final)


def _write_merged(run_dir: Path, dest: Path, card: dict) -> None:
    from ftcli.model_card import write_card

    def write(tmp: Path) -> None:
        shutil.copytree(run_dir / runs.MODEL_DIR, tmp, ignore=shutil.ignore_patterns(".*"))
        write_card(run_dir, tmp, "model", **card)

    _atomic_dir(write, dest)


def _write_adapter(run_dir: Path, dest: Path, card: dict, base_model: str | None) -> None:
    import json

    from ftcli.model_card import write_card

    def write(tmp: Path) -> None:
        shutil.copytree(run_dir / runs.ADAPTER_DIR, tmp, ignore=shutil.ignore_patterns(".*"))
        for path in _tokenizer_files(run_dir / runs.MODEL_DIR):
            if not (tmp / path.name).exists():
                shutil.copy2(path, tmp / path.name)
        if base_model:  # the base as the Hub knows it, so AutoPeftModel finds it anywhere
            config_path = tmp / "adapter_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = base_model
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_card(run_dir, tmp, "adapter", **card)

    _atomic_dir(write, dest)


def _write_gguf(run_dir: Path, dest: Path, gguf_type: str) -> Path:
    """The GGUF file (export_gguf writes it to a temporary name and renames it into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(_gguf_module().export_gguf(run_dir / runs.MODEL_DIR, dest, gguf_type))


def gguf_card_path(gguf_file: Path) -> Path:
    """The card written beside a GGUF file: `NAME.gguf` → `NAME.md`."""
    return Path(gguf_file).with_suffix(".md")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --- pushing --------------------------------------------------------------------------------------

def _check_hub_ready(repo_id: str, token: str | None) -> None:
    """Fail before exporting when a push cannot work: a bad repo id, offline mode, no token."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"--push-to-hub {repo_id!r} is not a valid repo id: {str(exc).splitlines()[0]}",
                        hint="use NAME or NAMESPACE/NAME (letters, digits, '-', '_', '.')") from None
    if constants.HF_HUB_OFFLINE:
        raise UserError("cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE)",
                        hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push")
    if token is None and get_token() is None:
        raise UserError("cannot push to the Hugging Face Hub: no token found",
                        hint="log in with `hf auth login`, or set HF_TOKEN to a token with write access")


def _hub_error(repo_id: str, exc: Exception) -> UserError:
    from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, LocalTokenNotFoundError,
                                        OfflineModeIsEnabled)

    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, LocalTokenNotFoundError):
        return UserError("cannot push to the Hugging Face Hub: no token found",
                         hint="log in with `hf auth login`, or set HF_TOKEN to a token with write access")
    if isinstance(exc, OfflineModeIsEnabled):
        return UserError("cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE)",
                         hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push")
    if isinstance(exc, HFValidationError):
        return UserError(f"--push-to-hub {repo_id!r} is not a valid repo id: {first}")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            return UserError(f"the Hugging Face Hub refused the token while pushing to {repo_id} (401)",
                             hint="log in again with `hf auth login`, or set HF_TOKEN to a valid token")
        if status == 403:
            return UserError(f"no write access to {repo_id} on the Hugging Face Hub (403)",
                             hint="use a token with write permission for that namespace")
        return UserError(f"pushing to {repo_id} failed: {first}")
    # No connection: the HTTP client's transport errors (connect, read timeouts, DNS) or the OS's.
    if isinstance(exc, OSError) or any(c.__name__ == "TransportError" for c in type(exc).__mro__):
        return UserError(f"cannot reach the Hugging Face Hub to push {repo_id}: {first}",
                         hint="check the network connection (or HF_ENDPOINT), then run the export again")
    return UserError(f"pushing to {repo_id} failed: {type(exc).__name__}: {first}")


def push_folder(folder: Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> tuple[str, str]:
    """Create the model repo if needed and upload `folder` into it; (repo id, url). Hub failures
    (no token, offline, HTTP errors, no network) become UserError with a hint."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        # private=None leaves an existing repo's visibility (and the namespace default) alone.
        created = api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        real_id = getattr(created, "repo_id", None) or repo_id
        api.upload_folder(repo_id=real_id, folder_path=str(folder), repo_type="model",
                          commit_message=commit_message or "Upload model exported by ftcli")
    except Exception as exc:  # everything the Hub client raises is about the network, the token or the repo
        raise _hub_error(repo_id, exc) from None
    url = getattr(created, "url", None) or f"https://huggingface.co/{real_id}"
    return real_id, str(url)


# --- the export -----------------------------------------------------------------------------------

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
    from ftcli.model_card import CARD_FILE, write_card

    if kind not in KINDS:
        raise UserError(f"unknown export kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "gguf" and gguf_type not in GGUF_TYPES:
        raise UserError(f"unknown GGUF type {gguf_type!r}: choose one of {', '.join(GGUF_TYPES)}")
    if to is None and not push_to_hub:
        raise UserError("say where to export: a folder (--to DIR), a file (--gguf FILE), or --push-to-hub REPO")
    run_dir = runs.resolve_run(run)
    recipe = runs.load_run_recipe(run_dir)
    _check_kind(run_dir, recipe, kind)
    dest = _check_destination(Path(to), run_dir, overwrite, is_file=kind == "gguf") if to is not None else None
    if push_to_hub:
        _check_hub_ready(push_to_hub, token)
    # How the card tells a reader to load it: from the Hub repo when pushing, else from the export.
    card = {"license": license, "base_model": base_model,
            "where": push_to_hub or (str(dest.parent if kind == "gguf" else dest) if dest else None)}

    with tempfile.TemporaryDirectory(prefix="ftcli-export-") as scratch:
        scratch = Path(scratch)
        if kind == "gguf":
            gguf_file = dest or scratch / f"{run_dir.name}-{gguf_type}.gguf"
            card.update(gguf_name=gguf_file.name, gguf_type=gguf_type)
            log(f"writing GGUF ({gguf_type}) of {run_dir / runs.MODEL_DIR}")
            _write_gguf(run_dir, gguf_file, gguf_type)
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
                _link_or_copy(gguf_file, upload / gguf_file.name)
                (upload / CARD_FILE).write_text(card_text, encoding="utf-8")
            path = dest
        else:
            folder = dest or scratch / "export"
            if kind == "merged":
                _write_merged(run_dir, folder, card)
            else:
                _write_adapter(run_dir, folder, card, base_model)
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
