"""Several processes on one machine, through the launchers users already have (CPU, gloo).

Each launch starts fresh interpreters, so these tests are few and each checks several things.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import repo_rows, write_jsonl
from ftcli.training.checkpoints import MARKER
from ftcli.recipe import parse_recipe

STEPS = 12


def recipe_file(folder: Path, model: Path, data: Path, name: str, lora_dropout: float | None = None,
                **train) -> Path:
    recipe = {
        "task": "causal-lm",
        "model": {"name_or_path": str(model)},
        "data": {"train": str(data), "eval_fraction": 0, "max_length": 64},
        "train": {"output_dir": str(folder / name), "max_steps": STEPS, "batch_size": 4, "learning_rate": 1e-2,
                  "save_steps": 4, "logging_steps": 1, **train},
    }
    if lora_dropout is not None:
        recipe["lora"] = {"r": 4, "alpha": 8, "dropout": lora_dropout}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # faulthandler: a rank that hangs is made to print where it waits (SIGABRT below) before the test fails.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in children(process.pid):
            os.kill(pid, signal.SIGABRT)
        time.sleep(3)
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{' '.join(command[-4:])} still running after {timeout} s:\n{err[-8000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def ftcli(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "ftcli", *args)


def logged_losses(run_dir: Path) -> list[float]:
    last = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 48 rows of varied lengths; a multiple of the global batch, so no process gets a padded-out batch.
    return write_jsonl(tmp_path_factory.mktemp("ddp-data") / "train.jsonl", repo_rows("pirate", 48))


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, tiny_llama, data):
    two = recipe_file(tmp_path, tiny_llama, data, "two")
    one = recipe_file(tmp_path, tiny_llama, data, "one", batch_size=8)

    result = run(*ftcli("finetune", str(two), "--nproc", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "effective batch size 8 = batch_size 4 x gradient_accumulation_steps 1 x 2 processes" in result.stderr
    # Only rank 0 speaks: every line once.
    assert result.stderr.count("[ftcli] task causal-lm") == 1 and result.stdout.count("run finished") == 1
    one_rank_result = one_process(one)

    run_dir = tmp_path / "two"
    results = json.loads((run_dir / "train_results.json").read_text())
    assert results["world_size"] == 2 and results["global_batch_size"] == 8 and "train_loss" in results
    # One model, and every rank's RNG state in each (complete) checkpoint.
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint-12", "checkpoint-8", "history.json", "logs",
                                                        "loss.png", "model", "recipe.yaml", "report.html",
                                                        "train_results.json"]
    assert len(list((run_dir / "logs").rglob("events.out.tfevents.*"))) >= 1  # rank 0's TensorBoard files
    marker = json.loads((run_dir / "checkpoint-12" / MARKER).read_text())
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(marker["files"])

    # The same data order, and gradients averaged over both processes' tokens: the same loss curve.
    two_losses, one_losses = logged_losses(run_dir), logged_losses(tmp_path / "one")
    assert len(two_losses) == STEPS == len(one_losses)
    gap = max(abs(a - b) for a, b in zip(two_losses, one_losses))
    print(f"largest per-step loss difference, 2 processes vs 1: {gap:.3g}")
    assert gap < 1e-4, (two_losses, one_losses)
    assert results["train_loss"] == pytest.approx(one_rank_result["train_loss"], abs=1e-4)

    # A rank-0 refusal (the run is finished) is said once, with the exit code of a user error.
    again = run(*ftcli("finetune", str(two), "--nproc", "2"))
    assert again.returncode == 2, again.stderr[-3000:]
    assert again.stderr.count("already holds a finished run") == 1
    assert "Traceback" not in again.stderr


def one_process(recipe: Path) -> dict:
    result = run(*ftcli("finetune", str(recipe)))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((Path(yaml.safe_load(recipe.read_text())["train"]["output_dir"]) /
                          "train_results.json").read_text())
    assert results["world_size"] == 1
    return results


def test_a_killed_torchrun_run_resumes_under_accelerate_launch_to_the_same_weights(tmp_path, tiny_llama, data):
    # LoRA dropout draws from each rank's own RNG: resuming must restore every rank's state.
    reference = recipe_file(tmp_path, tiny_llama, data, "reference", lora_dropout=0.1)
    result = run(*ftcli("finetune", str(reference), "--nproc", "2"))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = recipe_file(tmp_path, tiny_llama, data, "killed", lora_dropout=0.1)
    run_dir = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 "-m", "ftcli", "finetune", str(killed)], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(run_dir.glob(f"checkpoint-*/{MARKER}")):
        assert launcher.poll() is None, f"ended before its first checkpoint:\n{launcher.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within the timeout"
        time.sleep(0.01)
    # As a scheduler ends a job: the launcher and both ranks (each in a session of its own) at once.
    for pid in [*children(launcher.pid), launcher.pid]:
        os.kill(pid, signal.SIGKILL)
    launcher.wait()
    assert not (run_dir / "model").exists(), "the run finished before it could be killed"

    # accelerate's flag for "several processes through torchrun" is --multi_gpu, with or without GPUs.
    resumed = run(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2",
                  "--num_machines=1",
                  "--mixed_precision=no", "--dynamo_backend=no", "-m", "ftcli", "finetune", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-" in resumed.stderr
    left, right = weights(tmp_path / "reference"), weights(run_dir)
    worst = max((left[k] - right[k]).abs().max().item() for k in left)
    print(f"max abs weight difference after a 2-process kill and resume: {worst:.3g}")
    assert worst <= 1e-5, f"max abs weight difference after a multi-process resume: {worst}"


def test_ranks_whose_launcher_is_killed_save_a_checkpoint_and_stop(tmp_path, tiny_llama, data):
    # torchrun puts each rank in a session of its own: a SIGKILLed launcher would leave them training.
    recipe = recipe_file(tmp_path, tiny_llama, data, "orphaned", max_steps=5000, save_steps=20)
    run_dir = tmp_path / "orphaned"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    launcher = subprocess.Popen([*ftcli("finetune", str(recipe), "--nproc", "2")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(run_dir.glob(f"checkpoint-*/{MARKER}")):
        assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint from the 2-process run"
        time.sleep(0.05)
    ranks = children(launcher.pid)
    assert len(ranks) == 2
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
              for pid in ranks):
        if time.monotonic() > deadline:
            for pid in ranks:
                os.kill(pid, signal.SIGKILL)
            pytest.fail("the ranks kept running after their launcher was killed")
        time.sleep(0.1)
    newest = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert (newest / MARKER).is_file(), f"{newest.name} is not complete"
    assert int(newest.name.split("-")[1]) < 5000 and not (run_dir / "model").exists()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent pid
            found.append(int(stat.parent.name))
    return found


def test_nproc_checks_the_recipe_before_starting_processes(tmp_path, tiny_llama, data):
    recipe = recipe_file(tmp_path, tiny_llama, data, "bad", learning_rat=1)
    started = time.monotonic()
    result = run(*ftcli("finetune", str(recipe), "--nproc", "2"))
    assert result.returncode == 2
    assert "train.learning_rat: unknown key" in result.stderr
    assert "rank" not in result.stderr  # no process was launched
    assert time.monotonic() - started < 60


def test_nproc_under_a_launcher_is_refused(tmp_path, tiny_llama, data, monkeypatch):
    from typer.testing import CliRunner

    from ftcli.cli import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["finetune", str(recipe_file(tmp_path, tiny_llama, data, "x")), "--nproc", "2"])
    assert result.exit_code == 2 and "leave it out" in result.output


def test_a_launcher_on_a_machine_without_gpus_trains_on_cpu_with_gloo(monkeypatch):
    import torch

    from ftcli.training import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.use_cpu()  # one process: Trainer's own device choice
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.use_cpu()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not distributed.use_cpu()


def test_launch_reports_a_ranks_own_exit_code_over_the_launchers_sigterm(monkeypatch, capsys):
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from ftcli.training.distributed import launch

    def fails(exit_codes):
        def run(args):
            failures = {rank: ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="")
                        for rank, code in enumerate(exit_codes)}
            raise ChildFailedError("ftcli", failures)
        return run

    # Rank 1 exits 2 (a recipe error); the launcher then stops rank 0 with SIGTERM.
    monkeypatch.setattr(torchrun, "run", fails([-signal.SIGTERM, 2]))
    assert launch(2, ["finetune", "r.yaml"]) == 2
    assert capsys.readouterr().err == ""  # the rank printed its own message
    monkeypatch.setattr(torchrun, "run", fails([0, -signal.SIGKILL]))  # e.g. killed for memory
    assert launch(2, ["finetune", "r.yaml"]) == 137
    assert "process rank 1 exited with code -9" in capsys.readouterr().err


def test_exit_codes_of_killed_processes_read_like_a_shell():
    from ftcli.training.distributed import exit_code_of

    assert exit_code_of(-signal.SIGINT) == 130
    assert exit_code_of(-signal.SIGKILL) == 137
    assert exit_code_of(2) == 2


# --- the recipe's distributed: section ---------------------------------------------------------

BASE = {"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "d.jsonl"}}


def problems_of(distributed: dict) -> list[str]:
    from ftcli.errors import RecipeError

    try:
        parse_recipe({**BASE, "distributed": distributed}, "r.yaml")
    except RecipeError as exc:
        return exc.problems
    return []


def test_fsdp_options_are_checked_and_normalised():
    recipe = parse_recipe({**BASE, "distributed": {"fsdp": ["full_shard", "auto_wrap"],
                                                   "fsdp_config": {"min_num_params": 1000}}}, "r.yaml")
    assert recipe.distributed.fsdp == "full_shard auto_wrap"
    assert any("unknown FSDP option(s) 'ful_shard'" in p for p in problems_of({"fsdp": "ful_shard"}))
    assert any("choose one" in p for p in problems_of({"fsdp": "full_shard", "deepspeed": {"zero_optimization": {}}}))
    assert any("fsdp_config needs fsdp" in p for p in problems_of({"fsdp_config": {"a": 1}}))
    assert any("did you mean deepspeed" in p for p in problems_of({"deepspeeed": "z.json"}))


def test_deepspeed_config_files_are_resolved_and_read_when_the_recipe_loads(tmp_path, monkeypatch):
    from ftcli.errors import RecipeError
    from ftcli.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    (tmp_path / "broken.json").write_text("{stage: 2")
    (tmp_path / "list.json").write_text("[1]")

    def load(distributed: dict):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({**BASE, "distributed": distributed}))
        return load_recipe(path)

    assert load({"deepspeed": "zero2.json"}).distributed.deepspeed == str(tmp_path / "zero2.json")
    for config, message in (("missing.json", "file not found"), ("broken.json", "is not valid JSON"),
                            ("list.json", "must hold a JSON object")):
        with pytest.raises(RecipeError) as error:
            load({"deepspeed": config})
        assert any(p.startswith("distributed.deepspeed:") and message in p for p in error.value.problems)
    with pytest.raises(RecipeError) as error:
        load({"fsdp": "full_shard", "fsdp_config": "missing.json"})
    assert any(p.startswith("distributed.fsdp_config: file not found") for p in error.value.problems)


def test_the_distributed_section_reaches_training_arguments(tmp_path):
    from ftcli.training.arguments import distributed_options, training_arguments

    recipe = parse_recipe({**BASE, "train": {"output_dir": str(tmp_path / "r")},
                           "distributed": {"fsdp": "full_shard", "fsdp_config": {"min_num_params": 1000},
                                           "ddp_find_unused_parameters": False, "ddp_timeout": 600}}, "r.yaml")
    assert distributed_options(recipe) == {"fsdp": "full_shard", "fsdp_config": {"min_num_params": 1000},
                                           "ddp_find_unused_parameters": False, "ddp_timeout": 600}
    deepspeed = parse_recipe({**BASE, "distributed": {"deepspeed": {"zero_optimization": {"stage": 3}}}}, "r.yaml")
    assert distributed_options(deepspeed) == {"deepspeed": {"zero_optimization": {"stage": 3}}}
    no_fsdp = parse_recipe({**BASE, "train": {"output_dir": str(tmp_path / "r")},
                            "distributed": {"ddp_timeout": 600}}, "r.yaml")
    args = training_arguments(no_fsdp, tmp_path / "r")
    assert args.ddp_timeout == 600 and not args.use_cpu


def test_shipped_deepspeed_configs_are_json_objects_for_zero_2_and_3():
    folder = Path(__file__).resolve().parents[1] / "recipes" / "deepspeed"
    stages = {json.loads(p.read_text())["zero_optimization"]["stage"] for p in folder.glob("*.json")}
    assert stages == {2, 3}


def test_fsdp_or_deepspeed_on_a_machine_without_gpus_is_refused_not_quietly_ddp(monkeypatch):
    import torch

    from ftcli.training.distributed import check_engine
    from ftcli.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for section, engine in (({"fsdp": "full_shard"}, "distributed.fsdp"),
                            ({"deepspeed": {"zero_optimization": {"stage": 2}}}, "distributed.deepspeed")):
        recipe = parse_recipe({**BASE, "distributed": section}, "r.yaml")
        with pytest.raises(UserError, match=f"{engine} needs GPUs"):
            check_engine(recipe.distributed)
    check_engine(parse_recipe({**BASE, "distributed": {"ddp_timeout": 60}}, "r.yaml").distributed)  # plain DDP
    check_engine(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_engine(parse_recipe({**BASE, "distributed": {"fsdp": "full_shard"}}, "r.yaml").distributed)
