"""What a new `ftcli finetune` does with the folder it is given: refuse places it must not write, clear
a run for --overwrite, or pick the checkpoint to resume from (refusing recipe changes that would make
it meaningless)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ftcli import runs
from ftcli.errors import UserError
from ftcli.progress import log
from ftcli.recipe import Recipe
from ftcli.recipe.dotted import dotted_keys
from ftcli.training import checkpoints


def resume_point(recipe: Recipe, run_dir: Path, overwrite: bool) -> Path | None:
    """Refuse what must not happen to `run_dir`; return the checkpoint to resume from, if any."""
    runs.check_output_dir(run_dir)
    _refuse_foreign_checkpoints(run_dir)
    if overwrite:
        runs.clear_run(run_dir)
        return None
    if runs.is_finished(run_dir):
        raise UserError(f"{run_dir} already holds a finished run",
                        hint="pass --overwrite to replace it, or set train.output_dir to a new directory")
    checkpoint = checkpoints.last_complete(run_dir, warn=log)
    saved = run_dir / runs.RECIPE_FILE
    if checkpoint is None or not saved.is_file():
        return None
    blocking, harmless = recipe_changes(yaml.safe_load(saved.read_text(encoding="utf-8")),
                                                    recipe.model_dump(mode="json"))
    if blocking:
        raise UserError(f"cannot resume {run_dir} from {checkpoint.name}: the recipe changed in a way that "
                        f"breaks resuming: {', '.join(blocking)}",
                        hint="restore those keys to resume, or pass --overwrite to start again")
    if harmless:
        log(f"recipe changed since the checkpoint (allowed on resume): {', '.join(harmless)}")
    return checkpoint


def _refuse_foreign_checkpoints(run_dir: Path) -> None:
    """Checkpoints ftcli did not write are never resumed from nor removed by ftcli, but Trainer would
    rotate them away (save_total_limit) or write into one of the same step: refuse to run beside them."""
    if found := checkpoints.foreign(run_dir):
        names = ", ".join(p.name for p in found)
        raise UserError(f"{run_dir} holds {names}, not written by ftcli (no {checkpoints.MARKER}); "
                        "training here could delete or overwrite them",
                        hint="move them out of the folder, or set train.output_dir to a new directory")


# Recipe keys whose change makes an old checkpoint meaningless for the new run. Anything else
# (logging, saving, eval, generate) is allowed on resume and reported.
_BLOCKING_PREFIXES = ("task", "model.", "data.", "lora")  # "lora" also covers LoRA on/off


_BLOCKING_TRAIN_KEYS = {"epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                        "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "seed",
                        "gradient_checkpointing", "on_nonfinite_loss", "group_by_length"}  # the batch order


def recipe_changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """Compare two resolved recipes (as dicts): (keys that forbid resuming, harmless changed keys)."""
    before, after = dotted_keys(old), dotted_keys(new)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    blocking = [k for k in changed if k.startswith(_BLOCKING_PREFIXES)
                or (k.startswith("train.") and k.split(".", 1)[1] in _BLOCKING_TRAIN_KEYS)]
    return blocking, [k for k in changed if k not in blocking]
