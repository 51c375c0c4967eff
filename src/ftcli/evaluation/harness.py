"""`ftcli eval --harness`: EleutherAI's lm-evaluation-harness tasks on the tuned and the base model.

lm-eval is an optional extra (`pip install 'ftcli[harness]'`), imported only here and only when asked
for: importing it and indexing its ~15,000 task files takes several seconds. We load both models our
own way (`modeling.load`, as `ftcli eval` scores them) and hand the objects to lm-eval's HFLM, so a
run's model/ folder, a QLoRA base and a from_config base all work; lm-eval only builds the prompts
and scores them. Its metrics come back flat, as `harness/<task>/<metric>`, beside ftcli's own.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ftcli.errors import UserError, first_line, suggest
from ftcli.modeling.load import load_model
from ftcli.progress import log

PREFIX = "harness/"
INSTALL_HINT = "pip install 'ftcli[harness]'"


@dataclass
class Harness:
    """The tasks asked for, checked and ready to run (lm-eval's TaskManager knows them all)."""

    specs: list[str]  # task names, group or tag names, and YAML file paths, as lm-eval's TaskManager loads them
    manager: object  # lm_eval.tasks.TaskManager
    chat_template: bool | None  # None: when the tokenizer has one, as ftcli prompts chat models


def split_tasks(values: list[str] | str | None) -> list[str]:
    """`--harness a,b --harness c.yaml` → ["a", "b", "c.yaml"]."""
    values = [values] if isinstance(values, str) else values or []
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise UserError(f"--harness needs EleutherAI's lm-evaluation-harness, which is not installed "
                        f"({first_line(exc)})", hint=INSTALL_HINT) from None
    if not hasattr(TaskManager, "load"):  # the task index that also loads YAML paths came in later 0.4 releases
        raise UserError(f"--harness needs a newer lm-evaluation-harness than {getattr(lm_eval, '__version__', '?')}",
                        hint="pip install -U 'lm-eval<0.5' (ftcli is tested with 0.4.13)")
    return lm_eval


def prepare(task: str, tasks: list[str], include: list[str] | None = None,
            chat_template: bool | None = None) -> Harness:
    """Check the task names and paths before any model loads; raise UserError on the first unknown one."""
    if task != "causal-lm":
        raise UserError(f"--harness evaluates decoder (causal-lm) models; this run's task is {task}",
                        hint="run lm-evaluation-harness on a causal-lm run, or leave --harness out")
    if not tasks:
        raise UserError("--harness needs at least one task name or task YAML file")
    folders = [Path(d).expanduser() for d in include or []]
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"--harness-include: no such folder: {folder}")
    _lm_eval()
    from lm_eval.tasks import TaskManager

    with _quiet():
        manager = TaskManager(include_path=[str(f) for f in folders] or None)
    specs = []
    for spec in tasks:
        path = Path(spec).expanduser()
        if spec.endswith((".yaml", ".yml")) or path.is_file():
            if not path.is_file():
                raise UserError(f"--harness: task file not found: {path}")
            specs.append(str(path.resolve()))
        elif spec in manager.all_tasks:
            specs.append(spec)
        else:
            raise UserError(f"--harness: unknown lm-eval task '{spec}'{suggest(spec, manager.all_tasks)}",
                            hint="pass a task name lm-eval knows (`lm-eval ls tasks`), a task YAML file "
                                 "(e.g. data/harness/pirate-choice.yaml), or --harness-include DIR for a "
                                 "folder of your own task YAML files")
    return Harness(specs, manager, chat_template)


def evaluate_pair(harness: Harness, recipe, tuned, base, tokenizer, limit: int | None) -> dict:
    """lm-eval's results for the tuned model (and the base model unless `base` is None), as
    `{"tuned": {name: value}, "base": ..., "stderr": {"tuned": ..., "base": ...}, "harness": {...}}`."""
    chat = bool(getattr(tokenizer, "chat_template", None)) if harness.chat_template is None \
        else harness.chat_template
    out: dict = {"stderr": {}, "harness": {"tasks": harness.specs, "limit": limit, "chat_template": chat,
                                           "subtasks": {}}}
    for side, source in (("tuned", tuned), ("base", base)):
        if source is None:
            continue
        log(f"lm-evaluation-harness: {', '.join(harness.specs)} on the {side} model"
            + (" (chat template)" if chat else ""))
        raw = run_tasks(harness, _loaded(recipe, source, tokenizer), tokenizer, recipe.eval.batch_size,
                        limit, chat)
        everything, stderr = flatten(raw)
        shown = _top_level(raw, everything)
        out[side] = {k: v for k, v in everything.items() if k in shown}
        out["stderr"][side] = {k: v for k, v in stderr.items() if k in shown}
        out["harness"]["subtasks"][side] = {k: v for k, v in everything.items() if k not in shown}
        out["harness"].update(examples={t: n.get("effective") for t, n in raw.get("n-samples", {}).items()},
                              versions=raw.get("versions", {}), n_shot=raw.get("n-shot", {}),
                              lm_eval_version=raw.get("lm_eval_version"))
    return out


def _loaded(recipe, source, tokenizer):
    """The model as `ftcli eval` loads it, on the accelerator when there is one (a quantized base is
    already placed by bitsandbytes)."""
    import torch

    model = load_model(recipe.task, source, None, tokenizer.pad_token_id, tokenizer, recipe.train.seed).eval()
    if torch.cuda.is_available() and getattr(source, "quantization", None) is None:
        model = model.to("cuda")
    return model


def run_tasks(harness: Harness, model, tokenizer, batch_size: int, limit: int | None, chat: bool) -> dict:
    """lm-eval's own `simple_evaluate` result for one loaded model."""
    lm_eval = _lm_eval()
    from lm_eval.models.huggingface import HFLM

    with _quiet():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
        try:
            return lm_eval.simple_evaluate(model=lm, tasks=harness.specs, task_manager=harness.manager,
                                           limit=limit, log_samples=False, apply_chat_template=chat)
        except ConnectionError as exc:  # datasets' "Couldn't reach 'allenai/ai2_arc' on the Hub"
            raise UserError(f"--harness: a task's dataset could not be fetched: {first_line(exc)}",
                            hint="tasks whose data is on the Hub need the network once (then the Hugging Face "
                                 "cache); offline, use a task YAML over local files, such as "
                                 "data/harness/pirate-choice.yaml") from None
        except FileNotFoundError as exc:  # a local task's data_files (read relative to the current folder)
            raise UserError(f"--harness: a task's data file was not found: {first_line(exc)}",
                            hint="lm-eval reads a task's dataset_kwargs.data_files relative to the folder "
                                 "you run ftcli from; run from there or make the paths absolute") from None


def flatten(raw: dict) -> tuple[dict, dict]:
    """lm-eval's `{"results": {task: {"acc,none": v, "acc_stderr,none": se}}}` (groups under "groups")
    → `{"harness/task/acc": v}` and the same for the standard errors. A metric under a filter other than
    "none" (e.g. gsm8k's "strict-match") keeps it: `harness/gsm8k/exact_match/strict-match`."""
    metrics, stderr = {}, {}
    for task, values in {**raw.get("results", {}), **raw.get("groups", {})}.items():
        for key, value in values.items():
            if "," not in key or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue  # "alias", "name", "sample_len" and the like
            metric, filter_name = key.split(",", 1)
            target = stderr if metric.endswith("_stderr") else metrics
            metric = metric.removesuffix("_stderr")
            name = f"{PREFIX}{task}/{metric}" + ("" if filter_name == "none" else f"/{filter_name}")
            if not math.isnan(value):
                target[name] = float(value)
    return metrics, stderr


def _top_level(raw: dict, metrics: dict) -> set[str]:
    """The metrics of the tasks and groups asked for; a group's subtasks (mmlu has 57) stay out of the table."""
    children = {c for subtasks in raw.get("group_subtasks", {}).values() for c in subtasks}
    return {name for name in metrics if name[len(PREFIX):].split("/", 1)[0] not in children}


@contextmanager
def _quiet():
    """lm-eval logs every step at INFO/WARNING (and warns that it was handed a model object, which we
    mean to do); keep its errors only, since ftcli says what runs."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
