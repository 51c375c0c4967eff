"""`ftcli serve --engine vllm`: the command line that starts vLLM's own OpenAI-compatible server for a
tiny run (its model folder, served id, host, port, key, generation defaults and a chat template written
outside the run directory), chats rendered by that template exactly as `ftcli generate` renders them,
and the CLI run against a stand-in for vLLM's entry point: its arguments, its failures as short errors,
Ctrl-C and SIGTERM passed on to it, and the clear error when vLLM is not installed.

No test here runs vLLM itself (it needs a CUDA GPU): `fake_vllm` is a package named vllm whose
`vllm.entrypoints.openai.api_server` records what it was started with.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from serve_fixtures import run, snapshot  # noqa: F401 - run is a fixture

ENTRY = ["-m", "vllm.entrypoints.openai.api_server"]

FAKE_SERVER = '''
import json, os, signal, sys, time
from pathlib import Path

args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None

out = Path(os.environ["FAKE_VLLM_OUT"])
record = {"argv": sys.argv, "pid": os.getpid(), "pgid": os.getpgid(0), "signal": None,
          "key": os.environ.get("VLLM_API_KEY")}
if value("--chat-template"):
    record["chat_template"] = Path(value("--chat-template")).read_text(encoding="utf-8")
if value("--generation-config"):
    record["generation_config"] = json.loads(
        (Path(value("--generation-config")) / "generation_config.json").read_text(encoding="utf-8"))
mode = os.environ.get("FAKE_VLLM_MODE", "exit:0")

def stop(signum, frame):
    record["signal"] = signal.Signals(signum).name
    out.write_text(json.dumps(record))
    sys.exit(0)

if mode == "wait":
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
out.write_text(json.dumps(record))
if mode == "wait":
    (out.parent / "started").write_text("yes")
    while True:
        time.sleep(0.1)
sys.exit(int(mode.split(":")[1]))
'''


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """A package named vllm on PYTHONPATH (and sys.path) whose api_server module writes its argv to a file."""
    root = tmp_path / "fake-vllm"
    package = root / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (root / "vllm", root / "vllm" / "entrypoints", package):
        (folder / "__init__.py").write_text("", encoding="utf-8")
    (package / "api_server.py").write_text(FAKE_SERVER, encoding="utf-8")
    out = tmp_path / "fake-vllm-out" / "record.json"
    out.parent.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FAKE_VLLM_OUT", str(out))
    monkeypatch.delenv("FTCLI_API_KEY", raising=False)
    return out


def flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def variant(run: Path, folder: Path, generate: dict | None = None, data: dict | None = None,
            mode: str | None = None) -> Path:
    """A copy of the tiny run whose recipe's generate: and data: sections are changed."""
    copy = folder / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint-*"))
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text(encoding="utf-8"))
    recipe["generate"].update(generate or {})
    recipe["data"].update(data or {})
    recipe["train"]["output_dir"] = str(copy)
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    if mode is not None:
        results = json.loads((copy / "train_results.json").read_text(encoding="utf-8"))
        (copy / "train_results.json").write_text(json.dumps({**results, "mode": mode}), encoding="utf-8")
    return copy


# ------------------------------------------------------------------------------------- the command line

def test_command_for_a_run(run, tmp_path):
    from ftcli.serving.vllm_server import prepare

    before = snapshot(run)
    target, cmd, env = prepare(run, tmp_path / "files", host="0.0.0.0", port=8123, api_key="sk-test")
    assert cmd[0] == sys.executable and cmd[1:3] == ENTRY
    assert flag(cmd, "--model") == str(run / "model")
    assert flag(cmd, "--served-model-name") == "pirate" == target.model_id
    assert (flag(cmd, "--host"), flag(cmd, "--port"), env["VLLM_API_KEY"]) == ("0.0.0.0", "8123", "sk-test")
    assert "--api-key" not in cmd and "sk-test" not in " ".join(cmd)  # not on a command line others can read
    assert "--tokenizer" not in cmd  # the run's model/ holds its tokenizer
    generation = Path(flag(cmd, "--generation-config"))
    config = json.loads((generation / "generation_config.json").read_text(encoding="utf-8"))
    assert config["max_new_tokens"] == 12 and config["temperature"] == 0.0  # the run's generate: section
    assert config["eos_token_id"] is not None  # the model's own file kept
    template = Path(flag(cmd, "--chat-template"))
    assert template.is_file() and run not in template.parents and run not in generation.parents
    assert flag(cmd, "--chat-template-content-format") == "string"
    assert snapshot(run) == before  # nothing written into the run directory


def test_command_without_a_key(run, tmp_path):
    from ftcli.serving.vllm_server import prepare

    _, cmd, env = prepare(run, tmp_path / "files")
    assert "VLLM_API_KEY" not in env and "--api-key" not in cmd
    assert (flag(cmd, "--host"), flag(cmd, "--port")) == ("127.0.0.1", "8000")


def test_system_prompt_goes_into_a_template_outside_the_run(run, tmp_path):
    from ftcli.serving.vllm_server import prepare

    pirate = variant(run, tmp_path / "runs", generate={"system_prompt": "You are a pirate. Say \"arr\"!",
                                                       "temperature": 0.7, "top_p": 0.9, "top_k": 20})
    before = snapshot(pirate)
    _, cmd, _ = prepare(pirate, tmp_path / "files", max_tokens=8)
    template = Path(flag(cmd, "--chat-template"))
    assert pirate not in template.parents and template.parent == tmp_path / "files"
    assert 'You are a pirate. Say \\"arr\\"!' in template.read_text(encoding="utf-8")
    config = json.loads((Path(flag(cmd, "--generation-config")) / "generation_config.json").read_text())
    assert (config["temperature"], config["top_p"], config["top_k"]) == (0.7, 0.9, 20)
    assert config["max_new_tokens"] == 8  # capped at --max-tokens, as the default engine caps it
    assert snapshot(pirate) == before


def test_base_and_model(run, tmp_path, tiny_llama):
    from ftcli.errors import UserError
    from ftcli.serving.vllm_server import prepare

    target, cmd, _ = prepare(run, tmp_path / "base", base=True)
    assert flag(cmd, "--model") == str(tiny_llama.resolve()) and flag(cmd, "--tokenizer") == str(run / "model")
    assert flag(cmd, "--served-model-name") == "pirate-base" == target.model_id
    target, cmd, _ = prepare(None, tmp_path / "model", model=str(tiny_llama))
    assert flag(cmd, "--model") == str(tiny_llama.resolve())
    assert flag(cmd, "--served-model-name") == tiny_llama.name and "--tokenizer" not in cmd
    with pytest.raises(UserError, match="cannot be combined"):
        prepare(run, tmp_path / "both", model=str(tiny_llama))


# ------------------------------------------------------------- chats rendered as `ftcli generate` renders

CONVERSATIONS = [
    [{"role": "user", "content": "Where is the treasure?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
    [{"role": "system", "content": "s1"}, {"role": "developer", "content": "s2"}, {"role": "user", "content": "Q1"},
     {"role": "assistant", "content": "A1 "}, {"role": "user", "content": "Q2"}],
]

FEW_SHOT = [{"prompt": "Hi", "response": "Ahoy"}, {"prompt": "Bye", "response": "Fair winds"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": 'The weather "now"',
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}]

VARIANTS = {
    "chat": ({}, {}, None),
    "system prompt": ({"system_prompt": 'Pirate {{ "x" }} %} ünï 😀\nspeak'}, {}, None),
    "few-shot": ({"system_prompt": "Be brief.", "few_shot": FEW_SHOT}, {}, None),
    "chatml": ({"system_prompt": "S"}, {"template": "chatml"}, None),
    "tools": ({"system_prompt": "S", "tools": TOOLS}, {"template": "chatml"}, None),
    "plain": ({"system_prompt": "S", "few_shot": FEW_SHOT}, {"template": "plain"}, None),
    "alpaca": ({"few_shot": FEW_SHOT}, {"template": "alpaca"}, None),
    "custom template": ({"template": "Q: {prompt}\nA:", "few_shot": FEW_SHOT}, {"template": "plain"}, None),
    "text": ({"system_prompt": "S", "few_shot": FEW_SHOT}, {}, "text"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_chats_render_as_generate_renders_them(run, tmp_path, name):
    """vLLM renders a chat with the tokenizer's apply_chat_template and --chat-template; the prompt is
    the one `ftcli generate` (and the default engine) builds for the same chat."""
    from ftcli.generation.prompting import format_generation_prompt
    from ftcli.modeling.load import load_tokenizer, local_model
    from ftcli.serving.vllm_server import prepare

    generate, data, mode = VARIANTS[name]
    copy = variant(run, tmp_path / "runs", generate=generate, data=data, mode=mode)
    target, cmd, _ = prepare(copy, tmp_path / "files")
    template = Path(flag(cmd, "--chat-template")).read_text(encoding="utf-8")
    tokenizer = load_tokenizer(local_model(copy / "model"))
    for conversation in CONVERSATIONS:
        system = [m["content"] for m in conversation if m["role"] in ("system", "developer")]
        turns = [m["content"] for m in conversation if m["role"] not in ("system", "developer")]
        settings = target.settings.model_copy(update={"system_prompt": "\n\n".join(system)}) if system \
            else target.settings
        history = list(zip(turns[:-1:2], turns[1:-1:2]))
        expected = format_generation_prompt(tokenizer, turns[-1], settings, target.chat, target.mode, history=history)
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                                 chat_template=template)
        assert rendered == expected, conversation


# ------------------------------------------------------------------------ the CLI with a stand-in for vLLM

def test_cli_starts_vllm_with_the_run(run, fake_vllm):
    from ftcli.cli import app

    before = snapshot(run)
    result = CliRunner().invoke(app, ["serve", str(run), "--engine", "vllm", "--port", "8123", "--api-key", "sk-1"])
    assert result.exit_code == 0, result.output
    record = json.loads(fake_vllm.read_text(encoding="utf-8"))
    argv = record["argv"]
    assert flag(argv, "--model") == str(run / "model") and flag(argv, "--served-model-name") == "pirate"
    assert (flag(argv, "--host"), flag(argv, "--port"), record["key"]) == ("127.0.0.1", "8123", "sk-1")
    assert "sk-1" not in " ".join(argv)
    assert record["generation_config"]["max_new_tokens"] == 12 and "<|im_start|>" in record["chat_template"]
    assert not Path(flag(argv, "--chat-template")).exists()  # the temporary directory is gone
    assert "vLLM serves" in result.output and "page at / is the default engine's only" in result.output
    assert snapshot(run) == before


def test_cli_key_from_the_environment(run, fake_vllm, monkeypatch):
    from ftcli.cli import app

    monkeypatch.setenv("FTCLI_API_KEY", "sk-env")
    result = CliRunner().invoke(app, ["serve", str(run), "--engine", "vllm"])
    assert result.exit_code == 0, result.output
    assert json.loads(fake_vllm.read_text())["key"] == "sk-env"


@pytest.mark.parametrize("status, exit_code, message", [(1, 1, "vLLM's server exited with code 1"),
                                                         (2, 2, "refused its command line")])
def test_cli_vllm_failing(run, fake_vllm, monkeypatch, status, exit_code, message):
    from ftcli.cli import app

    monkeypatch.setenv("FAKE_VLLM_MODE", f"exit:{status}")
    result = CliRunner().invoke(app, ["serve", str(run), "--engine", "vllm"])
    assert result.exit_code == exit_code
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 6  # a short message


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_reach_vllm(run, fake_vllm, monkeypatch, signum):
    """Ctrl-C (SIGINT) or SIGTERM to ftcli stops vLLM's server, which runs in its own process group,
    and ftcli exits 0 as the default engine does when stopped."""
    monkeypatch.setenv("FAKE_VLLM_MODE", "wait")
    started = fake_vllm.parent / "started"
    proc = subprocess.Popen([sys.executable, "-m", "ftcli", "serve", str(run), "--engine", "vllm"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the stand-in for vLLM did not start"
            time.sleep(0.1)
        child = json.loads(fake_vllm.read_text())
        assert child["pgid"] == child["pid"] != os.getpgid(0)  # its own group: a terminal's Ctrl-C reaches ftcli
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert json.loads(fake_vllm.read_text())["signal"] == signum.name
    assert "vLLM's server stopped" in output and "Traceback" not in output


def test_without_vllm_the_clear_error_stays(run, monkeypatch):
    from ftcli.cli import app

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    result = CliRunner().invoke(app, ["serve", str(run), "--engine", "vllm"])
    assert result.exit_code == 2
    assert "--engine vllm needs vLLM, which is not installed here" in result.output
    assert "Traceback" not in result.output
