"""`ftcli serve --engine vllm`: the run's model served by vLLM's own OpenAI-compatible server
(`python -m vllm.entrypoints.openai.api_server`) in a child process, never by ftcli's engine.

The target resolves as the default engine's does (a run dir, a recipe, the latest finished run,
`--base`, or any `--model`; a LoRA run's model/ is already the merged full weights), without loading
any weights here. What `ftcli generate` would do with a prompt is handed to vLLM as its own flags:

* `--generation-config DIR`: a generation_config.json written to a temporary directory: the model's
  own file with the run's `generate:` defaults in place of its sampling fields (temperature, top_p,
  top_k, repetition_penalty, max_new_tokens), so that a request that leaves them out decodes as
  `ftcli generate` does (greedy unless the run samples);
* `--chat-template FILE` (in the same temporary directory, never in the run directory): the run's
  chat template (the tokenizer's, or ChatML for `data.template: chatml`) wrapped so that a chat
  reaches it as the messages `ftcli generate` builds: the run's system prompt first when a request
  has no system message (several leading system or developer messages joined into one), its
  few-shot examples as earlier turns, its tools; or, for runs prompted without a chat template, the
  plain prompt format (`Q: {prompt}\\nA:`, the prompt and a newline, ...) as a template;
* `--seed`, `--served-model-name` (the default engine's model id), `--host`, `--port`; the API key
  as VLLM_API_KEY in vLLM's environment (on its command line, any local user could read it).

The flag names are vLLM's (vllm/entrypoints/openai/cli_args.py: FrontendArgs and BaseFrontendArgs;
vllm/config/model.py: ModelConfig; vllm/entrypoints/openai/api_server.py: its `__main__`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ftcli.errors import FtcliError, UserError
from ftcli.progress import log
from ftcli.serving.vllm_files import VllmTarget, resolve_target, write_files

ENTRY_POINT = "vllm.entrypoints.openai.api_server"
STOP_GRACE_S = 30  # after a forwarded Ctrl-C or SIGTERM, how long vLLM may take to stop before it is killed


# --- the command and the child process ---------------------------------------------------------------------

def vllm_command(target: VllmTarget, host: str, port: int, generation_dir: Path,
                 chat_template_file: Path | None, python: str | None = None) -> list[str]:
    """The command line that starts vLLM's OpenAI-compatible server for `target`. The API key is not on
    it (any local user can read a command line): `vllm_environment` hands it over as VLLM_API_KEY."""
    cmd = [python or sys.executable, "-m", ENTRY_POINT, "--model", target.model,
           "--served-model-name", target.model_id, "--host", host, "--port", str(port),
           "--generation-config", str(generation_dir), "--seed", str(target.settings.seed)]
    if target.tokenizer is not None:
        cmd += ["--tokenizer", target.tokenizer]
    if target.trust_remote_code:
        cmd += ["--trust-remote-code"]
    if chat_template_file is not None:
        # Our templates treat a message's content as text, as the default engine does.
        cmd += ["--chat-template", str(chat_template_file), "--chat-template-content-format", "string"]
    return cmd


def vllm_environment(api_key: str | None) -> dict[str, str]:
    """The child's environment: ours, with the key as VLLM_API_KEY (which vLLM's server reads when
    --api-key is not given), or without one."""
    env = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    return env


def prepare(target: str | Path | None, folder: Path, host: str = "127.0.0.1", port: int = 8000,
            api_key: str | None = None, base: bool = False, model: str | None = None,
            max_tokens: int = 1024) -> tuple[VllmTarget, list[str], dict[str, str]]:
    """The resolved target, vLLM's command line (its files written into `folder`) and environment."""
    resolved = resolve_target(target, base=base, model=model)
    template_file, generation_dir = write_files(resolved, folder, max_tokens)
    return resolved, vllm_command(resolved, host, port, generation_dir, template_file), vllm_environment(api_key)


def _describe(target: VllmTarget, max_tokens: int) -> str:
    s = target.settings
    decoding = "greedy" if s.temperature == 0 else f"temperature {s.temperature}, top_p {s.top_p}" + (
        f", top_k {s.top_k}" if s.top_k else "")
    if not target.chat:
        prompts = "the run's plain prompt format" if target.mode == "sft" else "plain continuation"
    else:
        prompts = "ChatML" if isinstance(target.chat, str) else "the tokenizer's chat template"
    extras = [what for what, on in (("system prompt", s.system_prompt), ("few-shot examples", s.few_shot),
                                    ("tools", s.tools)) if on]
    prompts += f" with the run's {' and '.join(extras)}" if extras else ""
    return f"chats rendered with {prompts}; defaults: {decoding}, max_tokens {min(s.max_new_tokens, max_tokens)}"


def _run_child(cmd: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """Run vLLM until it exits; Ctrl-C, SIGTERM and SIGHUP are passed on to it. (exit status, stopped by us)."""
    state: dict = {"proc": None, "asked": False, "at": 0.0, "sent": None, "killed": False}

    def signal_group(signum: int) -> None:
        if state["proc"] is not None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(state["proc"].pid, signum)

    def forward(signum, _frame):
        if state["asked"]:  # asked twice: stop now
            signal_group(signal.SIGKILL)
            return
        sent = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM  # SIGHUP: stop as for SIGTERM
        state.update(asked=True, at=time.monotonic(), sent=sent)
        log("stopping vLLM's server")
        signal_group(state["sent"])

    # The handlers first, so that a signal arriving while vLLM starts is not lost (it is sent once vLLM exists).
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = {s: signal.signal(s, forward) for s in handled} if main else {}
    try:
        # Its own process group: a Ctrl-C in the terminal reaches ftcli, which passes it on once (a second
        # SIGINT would make vLLM's uvicorn skip its graceful shutdown), and a kill takes vLLM's workers too.
        state["proc"] = proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        if state["asked"]:
            signal_group(state["sent"])
        while True:
            try:
                return proc.wait(timeout=0.5), state["asked"]
            except subprocess.TimeoutExpired:
                if state["asked"] and not state["killed"] and time.monotonic() - state["at"] > STOP_GRACE_S:
                    log(f"vLLM's server did not stop within {STOP_GRACE_S} s; killing it")
                    state["killed"] = True
                    signal_group(signal.SIGKILL)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if state["proc"] is not None and state["proc"].poll() is None:  # ftcli itself failed: vLLM goes too
            signal_group(signal.SIGKILL)
            state["proc"].wait()


def _failure(code: int) -> FtcliError:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return FtcliError(f"vLLM's server was killed by {name}",
                          hint="its last messages are above (SIGKILL is often the system running out of memory)")
    if code == 2:  # argparse's exit status: a flag this vLLM does not take
        return UserError("vLLM's server refused its command line (exit code 2)",
                         hint="its message is above; this vLLM may be older or newer than the flags ftcli "
                         "passes (vllm/entrypoints/openai/cli_args.py)")
    return FtcliError(f"vLLM's server exited with code {code}",
                      hint="its messages are above (vLLM needs a CUDA GPU it can use, and a model it supports)")


def serve_vllm(target: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
               api_key: str | None = None, base: bool = False, model: str | None = None,
               max_tokens: int = 1024) -> None:
    """Serve the target through vLLM's OpenAI-compatible server in a child process until it stops."""
    with tempfile.TemporaryDirectory(prefix="ftcli-vllm-") as folder:
        resolved, cmd, env = prepare(target, Path(folder), host=host, port=port, api_key=api_key, base=base,
                                model=model, max_tokens=max_tokens)
        log(f"vLLM serves {resolved.model} as {resolved.model_id!r} on http://{host}:{port}/v1 (OpenAI API; "
            f"{_describe(resolved, max_tokens)}; generate.stop is not applied unless a request sends stop)")
        log("the chat page at / is the default engine's only: vLLM serves the API; its /v1/completions continues "
            "the prompt as sent, its /v1/chat/completions renders chats as `ftcli generate` does")
        if api_key is not None:
            log("vLLM's API key guards /v1 only: keep its other routes (e.g. /invocations) off untrusted networks")
        code, stopped = _run_child(cmd, env)
    if stopped:
        log("vLLM's server stopped")
        return
    if code != 0:
        raise _failure(code)
