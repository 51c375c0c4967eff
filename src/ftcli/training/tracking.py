"""Experiment tracking: what ftcli adds to the Trainer's own TensorBoard, MLflow and W&B callbacks.

`train.report_to` goes to TrainingArguments as it is, so transformers' integration callbacks log the
metrics. This module adds what they lack:

- `check_installed`: every tracker asked for can be imported, checked before any data or model loads
  (a UserError naming the pip command, not a RuntimeError from inside Trainer);
- `session`: while training, TensorBoard writes to <run_dir>/logs, MLflow uses a local store unless
  MLFLOW_TRACKING_URI names one, mlflow's own telemetry is off, and a run that training leaves open
  on an error is closed as FAILED;
- `RecipeParamsCallback`: the resolved recipe, flattened to dotted keys (`train.learning_rate`),
  logged as the run's parameters, so runs can be searched and compared by any recipe key.

Nothing here sends anything anywhere: a tracker reaches a server only when the user points it at
one (MLFLOW_TRACKING_URI, wandb's own login and mode).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from pathlib import Path

from transformers import TrainerCallback

from ftcli import runs
from ftcli.errors import Interrupted, UserError
from ftcli.recipe import dump_recipe

# Where a tracker comes from when it is missing: pip name (the `track` extra has the first two).
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}
# MLflow's local store is SQLite (its file store refuses to open unless MLFLOW_ALLOW_FILE_STORE is
# set); mlflow-skinny reaches it through these two.
_SQL_STORE_MODULES = ("sqlalchemy", "alembic")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        return False


def check_installed(report_to: list[str]) -> None:
    """Fail before any work if a tracker in `train.report_to` cannot run."""
    for name in report_to:
        if name == "none" or _installed(name):
            continue
        extra = " (or: pip install 'ftcli[track]')" if name != "wandb" else ""
        raise UserError(f"train.report_to: {name} is not installed",
                        hint=f"pip install {_PACKAGES[name]}{extra}, or remove {name} from train.report_to")
    if "mlflow" in report_to:
        if os.environ.get("DISABLE_MLFLOW_INTEGRATION", "").upper() == "TRUE":
            raise UserError("train.report_to names mlflow, but DISABLE_MLFLOW_INTEGRATION=TRUE turns "
                            "transformers' MLflow integration off", hint="unset it, or remove mlflow")
        missing = [m for m in _SQL_STORE_MODULES if not _installed(m)]
        if missing and not os.environ.get("MLFLOW_TRACKING_URI"):
            raise UserError(f"mlflow's local store (SQLite) needs {' and '.join(missing)}",
                            hint=f"pip install {' '.join(missing)} (or: pip install 'ftcli[track]'), "
                                 "or set MLFLOW_TRACKING_URI to a tracking server")


def local_store_uri() -> str:
    """The MLflow store when MLFLOW_TRACKING_URI is unset: ./mlflow.db in the current directory.

    It is MLflow's own default, so the runs of every recipe started from a project folder land in
    one searchable store (one run dir each would scatter them, and --overwrite would lose them), and
    `mlflow server` started in that folder finds them. Made absolute, so it cannot move if the
    process changes directory mid-run."""
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def tensorboard_dir(run_dir: Path) -> Path:
    """Where TensorBoardCallback writes: $TENSORBOARD_LOGGING_DIR when the user set it (transformers
    reads it), else <run_dir>/logs (transformers' own default would be <run_dir>/runs/<date>_<host>)."""
    chosen = os.environ.get("TENSORBOARD_LOGGING_DIR")
    return Path(os.path.expanduser(chosen)) if chosen else Path(run_dir) / runs.LOGS_DIR


def flatten_recipe(recipe) -> dict[str, str]:
    """The resolved recipe as {dotted key: string}: sections and mappings become dotted keys
    (`train.learning_rate`, `model.from_config.hidden_size`); a list of sources or examples gets an
    index (`data.train.0.path`); a list of plain values is one JSON value (`["q_proj", "v_proj"]`).
    Strings stay as they are; other values are JSON (`true`, `null`, `0.0002`)."""
    flat: dict[str, str] = {}

    def walk(value, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            for i, item in enumerate(value):
                walk(item, f"{key}.{i}")
        else:
            flat[re.sub(r"[^\w.\- /:]", "_", key)] = value if isinstance(value, str) else json.dumps(value)

    walk(recipe.model_dump(mode="json"), "")
    return flat


def _truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


@contextlib.contextmanager
def session(recipe, run_dir: Path, log=None):
    """Around building and running the Trainer: set up what the integration callbacks read, and
    yield the callback that logs the recipe. Everything set here is undone on the way out."""
    report_to = recipe.train.report_to
    env: dict[str, str] = {}
    if "tensorboard" in report_to and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
        env["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_dir(run_dir))  # read by TensorBoardCallback()
    mlflow = None
    if "mlflow" in report_to:
        # Before mlflow's first import, which is when it decides on telemetry. Left set afterwards, as
        # mlflow is imported once per process; MLFLOW_DISABLE_TELEMETRY=false opts back in.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

    saved = {name: os.environ.get(name) for name in env}
    default_store = mlflow is not None and not mlflow.is_tracking_uri_set()
    open_before = mlflow is not None and mlflow.active_run() is not None
    try:
        os.environ.update(env)
        if default_store:
            mlflow.set_tracking_uri(local_store_uri())  # MLflowCallback keeps a URI that is already set
        if log and any(name != "none" for name in report_to):
            where = {"tensorboard": f"TensorBoard in {tensorboard_dir(run_dir)}",
                     "mlflow": f"MLflow in {mlflow.get_tracking_uri() if mlflow else ''}",
                     "wandb": "Weights & Biases (as its own settings say)"}
            log("tracking: " + "; ".join(where[name] for name in report_to))
        yield RecipeParamsCallback(recipe, run_dir)
    except BaseException as exc:
        # MLflowCallback ends its run only in on_train_end; a failed run would stay RUNNING, and the
        # next training in this process would log into it.
        if mlflow is not None and not open_before and mlflow.active_run() is not None:
            mlflow.end_run("KILLED" if isinstance(exc, (KeyboardInterrupt, Interrupted)) else "FAILED")
        raise
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if default_store:
            mlflow.set_tracking_uri(None)


class RecipeParamsCallback(TrainerCallback):
    """Logs the flattened recipe as the run's parameters, to each tracker in `train.report_to`.

    Trainer calls the integration callbacks (report_to) before the ones it is given, so at
    on_train_begin MLflowCallback has opened its run, TensorBoardCallback its log folder and
    WandbCallback its run. Only the main process logs, as they do."""

    def __init__(self, recipe, run_dir: Path):
        self.recipe = recipe
        self.run_dir = Path(run_dir)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        report_to = self.recipe.train.report_to
        params = flatten_recipe(self.recipe)
        if "mlflow" in report_to:
            self._mlflow(params, args)
        if "tensorboard" in report_to:
            self._tensorboard(params)
        if "wandb" in report_to:
            import wandb

            if wandb.run is not None:  # wandb keeps nested config and shows it as recipe.train.learning_rate
                wandb.run.config.update({"recipe": self.recipe.model_dump(mode="json")}, allow_val_change=True)

    def _mlflow(self, params: dict[str, str], args) -> None:
        import mlflow
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        run = mlflow.active_run()
        if run is None:
            return
        # A run resumed through MLFLOW_RUN_ID already holds these keys, and MLflow refuses to change
        # a logged parameter: keep its values.
        logged = mlflow.MlflowClient().get_run(run.info.run_id).data.params
        items = [(key, _truncate(value, MAX_PARAM_VAL_LENGTH)) for key, value in params.items() if key not in logged]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            batch = dict(items[start:start + MAX_PARAMS_TAGS_PER_BATCH])
            try:
                mlflow.log_params(batch)
            except mlflow.exceptions.MlflowException:
                # A key MLflowCallback logged too (a null section such as `lora` against a model config
                # field) must not stop training: log the others one by one.
                for key, value in batch.items():
                    with contextlib.suppress(mlflow.exceptions.MlflowException):
                        mlflow.log_param(key, value)
        tags = {"ftcli.run_dir": str(self.run_dir.resolve()), "ftcli.task": self.recipe.task}
        if not args.run_name:  # else MLflow names it at random ("secretive-flea-253")
            tags["mlflow.runName"] = self.run_dir.name
        mlflow.set_tags(tags)

    def _tensorboard(self, params: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # A second event file in TensorBoardCallback's folder: the same run in TensorBoard.
        metrics = {"train/loss": 0.0}
        if self.recipe.train.eval_strategy != "no":
            metrics["eval/loss"] = 0.0
        with SummaryWriter(log_dir=str(tensorboard_dir(self.run_dir))) as writer:
            # HPARAMS tab: every recipe key beside the run's losses (only the metric names are used).
            for summary in hparams(params, metrics):
                writer.file_writer.add_summary(summary)
            # TEXT tab: the recipe itself (indented: markdown shows it as code).
            writer.add_text("recipe", "".join(f"    {line}\n" for line in dump_recipe(self.recipe).splitlines()))
