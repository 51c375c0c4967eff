"""Experiment tracking (train.report_to): what lands in TensorBoard's event files and MLflow's store,
read back with their own readers; the checks before training; nothing sent anywhere."""

from __future__ import annotations

import json
import os
import socket
import sys
import types
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli import runs
from ftcli.training import tracking
from ftcli.cli import app
from ftcli.errors import RecipeError, TrainingFailed, UserError
from ftcli.recipe import parse_recipe, resolve_paths

LONG_STOP = "THE END. " * 1000  # 9,000 characters: past MLflow's parameter value limit

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def recipe_dict(model: Path | str, data: Path | str, **train) -> dict:
    return {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0.0, "max_length": 96},
        "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
        "train": {"output_dir": "runs/tracked", "max_steps": 6, "batch_size": 4, "learning_rate": 5e-3,
                  "logging_steps": 2, "save_steps": 6, **train},
        "generate": {"stop": [LONG_STOP]},  # used by generation only
    }


# ---------------------------------------------------------------- the recipe key


def test_report_to_defaults_to_tensorboard_and_takes_only_known_trackers():
    base = {"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "x"}}
    assert parse_recipe(base).train.report_to == ["tensorboard"]
    assert parse_recipe({**base, "train": {"report_to": ["mlflow", "wandb"]}}).train.report_to == ["mlflow", "wandb"]

    def problems(report_to) -> list[str]:
        with pytest.raises(RecipeError) as info:
            parse_recipe({**base, "train": {"report_to": report_to}})
        return info.value.problems

    (typo,) = problems(["tensorbord"])
    assert typo.startswith("train.report_to.0:") and "'tensorboard', 'mlflow', 'wandb' or 'none'" in typo
    assert problems(["none", "mlflow"]) == ["train.report_to: 'none' cannot be combined with other trackers"]
    assert problems(["mlflow", "mlflow"]) == ["train.report_to: mlflow listed more than once"]
    assert problems("mlflow")[0].startswith("train.report_to: input should be a valid list")


def test_the_recipe_flattens_to_dotted_string_params():
    recipe = parse_recipe({
        "task": "causal-lm", "model": {"name_or_path": "models/m"},
        "data": {"train": [{"path": "a.jsonl"}, {"path": "b.jsonl", "weight": 0.5}]},
        "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
        "train": {"learning_rate": 1e-4, "report_to": ["none"]},
        "generate": {"few_shot": [{"prompt": "Hi", "response": "Arr"}]},
    })
    params = tracking.flatten_recipe(recipe)
    assert params["task"] == "causal-lm" and params["model.name_or_path"] == "models/m"
    assert params["train.learning_rate"] == "0.0001" and params["train.max_steps"] == "null"
    assert params["data.normalize"] == "true" and params["lora.r"] == "4"
    assert params["lora.target_modules"] == '["q_proj", "v_proj"]'  # a list of values: one JSON value
    assert params["data.train.1.path"] == "b.jsonl" and params["data.train.1.weight"] == "0.5"  # sources: indexed
    assert params["generate.few_shot.0.response"] == "Arr"
    assert params["tokenizer"] == "null"  # an absent section says so
    assert all(isinstance(v, str) for v in params.values())


# ---------------------------------------------------------------- one tracked training run


@pytest.fixture(scope="module")
def tracked_run(tiny_llama, tmp_path_factory):
    """Train once with report_to [tensorboard, mlflow], MLFLOW_TRACKING_URI unset, from a fresh project
    folder; every outgoing connection or DNS lookup is recorded (and refused)."""
    folder = tmp_path_factory.mktemp("project").resolve()
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(("connect", address))
            raise OSError("network disabled by test_tracking")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        attempts.append(("getaddrinfo", host))
        raise socket.gaierror("network disabled by test_tracking")

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "TENSORBOARD_LOGGING_DIR"):
            mp.delenv(name, raising=False)
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        data = write_jsonl(folder / "train.jsonl", repo_rows("pirate", 24))
        import ftcli

        run_dir = ftcli.finetune(resolve_paths(parse_recipe(
            recipe_dict(tiny_llama, data, report_to=["tensorboard", "mlflow"]))))
    state = json.loads((run_dir / "checkpoint-6" / "trainer_state.json").read_text())
    losses = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    return types.SimpleNamespace(folder=folder, run_dir=run_dir, losses=losses, attempts=attempts,
                                 store=f"sqlite:///{folder / 'mlflow.db'}")


def test_mlflow_run_with_recipe_params_and_metrics_lands_in_the_local_store(tracked_run, tiny_llama):
    import mlflow
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert (tracked_run.folder / "mlflow.db").is_file()  # ./mlflow.db of the directory ftcli ran in
    client = mlflow.MlflowClient(tracked_run.store)
    # Searchable by any recipe key.
    (run,) = client.search_runs(["0"], filter_string="params.`train.learning_rate` = '0.005'")
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.tags["ftcli.run_dir"] == str(tracked_run.run_dir) and run.data.tags["ftcli.task"] == "causal-lm"
    params = client.get_run(run.info.run_id).data.params
    assert params["model.name_or_path"] == str(tiny_llama)
    assert params["train.report_to"] == '["tensorboard", "mlflow"]'
    assert params["lora.target_modules"] == '["q_proj", "v_proj"]' and params["train.max_steps"] == "6"
    stop = params["generate.stop"]  # longer than MLflow takes: cut to its limit, not dropped
    assert len(stop) == MAX_PARAM_VAL_LENGTH and stop.endswith("...") and json.dumps([LONG_STOP]).startswith(stop[:-3])
    # The same run as transformers' MLflowCallback (its TrainingArguments params): our callback ran after it.
    assert params["learning_rate"] == "0.005" and params["max_steps"] == "6"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert {m.step: m.value for m in history} == pytest.approx(tracked_run.losses)
    assert sorted(tracked_run.losses) == [2, 4, 6]
    assert "train_loss" in run.data.metrics


def test_tensorboard_event_files_hold_the_loss_and_the_recipe(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    logs = tracked_run.run_dir / runs.LOGS_DIR
    assert not (tracked_run.run_dir / "runs").exists()  # not transformers' default runs/<date>_<host>
    events = EventAccumulator(str(logs))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(tracked_run.losses)
    start = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = {k: v.string_value for k, v in start.session_start_info.hparams.items()}
    assert hparams["train.learning_rate"] == "0.005" and hparams["data.max_length"] == "96"
    assert hparams["lora.target_modules"] == '["q_proj", "v_proj"]'
    (text,) = events.Tensors("recipe/text_summary")
    recipe_text = text.tensor_proto.string_val[0].decode()
    assert yaml.safe_load("\n".join(line[4:] for line in recipe_text.splitlines()))["train"]["max_steps"] == 6


def test_a_tracked_run_sends_nothing_and_leaves_no_settings_behind(tracked_run):
    import mlflow

    assert tracked_run.attempts == []
    assert mlflow.active_run() is None and not mlflow.is_tracking_uri_set()
    assert "MLFLOW_TRACKING_URI" not in os.environ and "TENSORBOARD_LOGGING_DIR" not in os.environ


def test_mlflow_tracking_uri_is_honoured_and_a_failed_run_is_closed_as_failed(tracked_run, workdir, monkeypatch):
    import mlflow

    recipe = parse_recipe(recipe_dict("m", "d.jsonl", report_to=["mlflow", "tensorboard"]))
    run_dir = workdir / "runs" / "failing"
    said = []
    with tracking.session(recipe, run_dir, said.append):  # unset: ./mlflow.db, for this session only
        assert mlflow.get_tracking_uri() == f"sqlite:///{workdir / 'mlflow.db'}"
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(run_dir / "logs")
    assert said == [f"tracking: MLflow in sqlite:///{workdir / 'mlflow.db'}; TensorBoard in {run_dir / 'logs'}"]
    assert not mlflow.is_tracking_uri_set() and "TENSORBOARD_LOGGING_DIR" not in os.environ

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked_run.store)
    with pytest.raises(TrainingFailed):
        with tracking.session(recipe, run_dir):
            assert mlflow.get_tracking_uri() == tracked_run.store
            run = mlflow.start_run()  # as MLflowCallback does at on_train_begin
            raise TrainingFailed("non-finite loss")
    assert mlflow.active_run() is None
    assert mlflow.MlflowClient(tracked_run.store).get_run(run.info.run_id).info.status == "FAILED"
    assert not (workdir / "mlflow.db").exists()


def test_overwrite_clears_the_old_tensorboard_logs(tmp_path):
    run = tmp_path / "run"
    (run / runs.LOGS_DIR).mkdir(parents=True)
    (run / runs.LOGS_DIR / "events.out.tfevents.1").write_bytes(b"")
    (run / runs.RECIPE_FILE).write_text("task: causal-lm\n")
    (run / "notes.txt").write_text("mine")
    runs.clear_run(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- checks and the callback alone


def test_a_missing_tracker_is_a_user_error_before_any_work(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec: not installed
    recipe = workdir / "r.yaml"
    # Neither the model nor the data exist: the tracker is the first thing checked.
    recipe.write_text(yaml.safe_dump(recipe_dict("models/absent", "absent.jsonl", report_to=["wandb"])))
    for command in ("finetune", "validate"):
        result = CliRunner().invoke(app, [command, str(recipe)])
        assert result.exit_code == 2, result.output
        assert "train.report_to: wandb is not installed" in result.output and "pip install wandb" in result.output

    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="local store .SQLite. needs sqlalchemy") as info:
        tracking.check_installed(["mlflow"])
    assert "pip install sqlalchemy" in info.value.hint
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # a server: no local store needed
    tracking.check_installed(["mlflow"])
    tracking.check_installed(["none"])


def test_the_callback_logs_on_the_main_process_only(tmp_path, monkeypatch):
    updates = []
    fake_wandb = types.SimpleNamespace(run=types.SimpleNamespace(
        config=types.SimpleNamespace(update=lambda values, **kw: updates.append(values))))
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    recipe = parse_recipe(recipe_dict("m", "d.jsonl", report_to=["tensorboard", "wandb"]))
    callback = tracking.RecipeParamsCallback(recipe, tmp_path / "run")
    args = types.SimpleNamespace(run_name=None)

    callback.on_train_begin(args, types.SimpleNamespace(is_world_process_zero=False), None)
    assert updates == [] and not (tmp_path / "run").exists()

    callback.on_train_begin(args, types.SimpleNamespace(is_world_process_zero=True), None)
    (update,) = updates
    assert update["recipe"]["train"]["learning_rate"] == 0.005  # W&B keeps nested config
    assert any((tmp_path / "run" / "logs").iterdir())


def test_mlflow_telemetry_is_turned_off(tmp_path, monkeypatch):
    """mlflow decides at its first import whether to send usage data; `session` sets
    MLFLOW_DISABLE_TELEMETRY before importing it, and leaves it set (a user's own value wins)."""
    import mlflow.telemetry.utils as telemetry

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "")
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY")  # (removed again after the test)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    monkeypatch.setattr(telemetry, "_IS_IN_CI_ENV_OR_TESTING", False)  # pytest and CI turn it off themselves
    assert not telemetry.is_telemetry_disabled()  # as a user's plain `mlflow` import would find it
    recipe = parse_recipe(recipe_dict("m", "d.jsonl", report_to=["mlflow"]))
    with tracking.session(recipe, tmp_path / "run"):
        assert telemetry.is_telemetry_disabled()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # opting in stays possible
    with tracking.session(recipe, tmp_path / "run"):
        assert not telemetry.is_telemetry_disabled()
