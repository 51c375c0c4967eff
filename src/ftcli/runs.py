"""The run directory: its layout, what ftcli wrote there, and the latest finished run below a folder.

Finding a run from a recipe file is `ftcli.recipe.resolve_run`: it reads the recipe."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ftcli.errors import UserError

MODEL_DIR = "model"  # final model + tokenizer (LoRA merged in)
ADAPTER_DIR = "adapter"  # the LoRA adapter alone
RECIPE_FILE = "recipe.yaml"  # the resolved recipe the run used
TRAIN_RESULTS = "train_results.json"
EVAL_RESULTS = "eval_results.json"
HISTORY = "history.json"  # Trainer's log history (loss, learning rate, tokens seen per logged step)
REPORT_HTML = "report.html"  # the run report (`ftcli.reporting`), one self-contained page
LOSS_PNG = "loss.png"  # the report's loss curves, as a file of its own
LOGS_DIR = "logs"  # TensorBoard event files (train.report_to)
# In checkpoint-N: written before Trainer saves into it, then replaced once every file is on disk
# (`ftcli.training.checkpoints`). A checkpoint-N with neither is not ours.
CHECKPOINT_SAVING = "ftcli-saving.json"
CHECKPOINT_COMPLETE = "ftcli-complete.json"
# Where to look for runs when none is named: output_dir is usually runs/NAME, sometimes deeper.
_SEARCH_DEPTH = 3
_SKIP = {".venv", ".git", "node_modules", "__pycache__", "models"}


def is_finished(run_dir: Path) -> bool:
    return (run_dir / TRAIN_RESULTS).is_file() and (run_dir / MODEL_DIR).is_dir()


def is_our_checkpoint(path: Path) -> bool:
    """A `checkpoint-N` folder ftcli wrote (or was writing): it carries one of ftcli's markers."""
    return path.name.startswith("checkpoint-") and path.is_dir() \
        and ((path / CHECKPOINT_SAVING).is_file() or (path / CHECKPOINT_COMPLETE).is_file())


def looks_like_run(run_dir: Path) -> bool:
    """Whether ftcli wrote this folder (so clearing or resuming it cannot hurt anything else). Plain
    Trainer checkpoints do not count: Trainer's save_total_limit rotation would delete them."""
    return (run_dir / RECIPE_FILE).is_file() or (run_dir / MODEL_DIR).is_dir() \
        or any(is_our_checkpoint(p) for p in run_dir.iterdir())


def special_place(resolved: Path) -> str | None:
    """What a folder is, if it is one that must never be written over or cleared: /, ~, the cwd."""
    special = {Path(resolved.anchor): "the filesystem root", Path.cwd().resolve(): "the current directory",
               Path.home().resolve(): "your home directory"}
    return special.get(resolved)


def check_output_dir(run_dir: Path) -> None:
    """Refuse output folders where writing (or --overwrite) could destroy unrelated files."""
    resolved = Path(run_dir).expanduser().resolve()
    if special := special_place(resolved):
        raise UserError(f"train.output_dir is {special} ({resolved}); refusing to write a run there",
                        hint="use a folder of its own, such as runs/NAME")
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"train.output_dir {resolved} is a file, not a folder")
    if resolved.is_dir() and any(resolved.iterdir()) and not looks_like_run(resolved):
        raise UserError(f"train.output_dir {resolved} already holds files that are not an ftcli run; "
                        "refusing to write into it", hint="choose an empty or new folder")


def find_latest_run(base: Path | None = None) -> Path:
    """The most recently finished run below `base` (the current directory by default)."""
    base = base or Path.cwd()
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if is_finished(folder):
            found.append(folder)
        if depth == 0:
            return
        for child in folder.iterdir():
            if child.is_dir() and child.name not in _SKIP and not child.name.startswith("."):
                walk(child, depth - 1)

    walk(base, _SEARCH_DEPTH)
    if not found:
        raise UserError(f"no finished run found under {base}",
                        hint="run `ftcli finetune RECIPE` first, or name a run directory or recipe")
    return max(found, key=lambda p: (p / TRAIN_RESULTS).stat().st_mtime)


def clear_run(run_dir: Path) -> None:
    """Remove what a previous run wrote (for --overwrite), leaving any unrelated files alone (checkpoints
    without ftcli's marker included)."""
    for child in run_dir.iterdir() if run_dir.is_dir() else []:
        ours = child.name in {MODEL_DIR, ADAPTER_DIR, RECIPE_FILE, TRAIN_RESULTS, EVAL_RESULTS, LOGS_DIR, "runs",
                              HISTORY, REPORT_HTML, LOSS_PNG} \
            or is_our_checkpoint(child) or child.name.startswith((f".{MODEL_DIR}", f".{ADAPTER_DIR}", ".checkpoint-"))
        if ours:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_if_readable(path: Path):
    """A file's JSON, or None when it is missing or unreadable: for pages that show what a run has."""
    try:
        return read_json(path) if Path(path).is_file() else None
    except (OSError, ValueError):
        return None


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """All `checkpoint-N` folders of a run, oldest step first."""
    if not Path(run_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def log_history(run_dir: Path) -> list[dict]:
    """Trainer's log history of a run: history.json, or (runs from before it was written) the newest
    checkpoint's trainer_state.json that is left; [] when there is neither."""
    saved = read_json_if_readable(Path(run_dir) / HISTORY)
    if isinstance(saved, list):
        return saved
    states = [p / "trainer_state.json" for p in checkpoint_dirs(run_dir) if (p / "trainer_state.json").is_file()]
    state = read_json_if_readable(states[-1]) if states else None
    history = state.get("log_history") if isinstance(state, dict) else None
    return history if isinstance(history, list) else []


def read_train_results(run_dir: Path) -> dict | None:
    path = Path(run_dir) / TRAIN_RESULTS
    return read_json(path) if path.is_file() else None
