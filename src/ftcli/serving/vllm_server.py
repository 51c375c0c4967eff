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
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from ftcli import runs
from ftcli.data.templates import generation_format, has_chat_template
from ftcli.errors import FtcliError, ModelError, UserError
from ftcli.generation.load import _base_of, _is_encoder_decoder, _ready
from ftcli.generation.prompting import settings_with
from ftcli.modeling.load import check_model_source, load_tokenizer, local_model
from ftcli.progress import log
from ftcli.recipe import GenerateSection, ModelSection, TrainSection, load_run_recipe, resolve_run

ENTRY_POINT = "vllm.entrypoints.openai.api_server"
# The generation_config.json fields vLLM reads as default sampling parameters (ModelConfig.get_diff_sampling_param).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens",
                   "max_length", "do_sample")
STOP_GRACE_S = 30  # after a forwarded Ctrl-C or SIGTERM, how long vLLM may take to stop before it is killed


class VllmTarget(NamedTuple):
    """What vLLM serves and how prompts are rendered for it (as `load_for_generation` would, no weights)."""

    model: str  # the folder (or hub id) vLLM loads the weights from
    tokenizer: str | None  # the run's tokenizer when the weights come from elsewhere (--base), else None
    model_id: str  # the id the API serves it under, the default engine's
    settings: GenerateSection  # the run's generate: section, checked, seed filled in, files read
    chat: bool | str  # the tokenizer's chat template (True), this Jinja one, or plain prompts (False)
    mode: str  # "sft" (answer a formatted prompt) or "text" (continue it)
    own_template: str | None  # the tokenizer's own chat template (what chat=True renders with)
    trust_remote_code: bool
    run_dir: Path | None


def _absolute(name_or_path: str) -> str:
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def _template_text(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one is the chat template
        template = template.get("default")
    return template if isinstance(template, str) and template else None


def resolve_target(target: str | Path | None = None, base: bool = False, model: str | None = None) -> VllmTarget:
    """The model folder, served id and prompt format for vLLM, resolved as the default engine resolves them."""
    if model is not None:
        if target is not None or base:
            raise UserError("--model serves a model directly; it cannot be combined with a run or --base")
        source = ModelSection(name_or_path=str(model))
        check_model_source(source.name_or_path)
        if _is_encoder_decoder(source.name_or_path):
            raise UserError(f"{model} is an encoder-decoder (seq2seq) model; --engine vllm serves causal LMs",
                            hint="serve it with the default engine (leave out --engine)")
        tokenizer = load_tokenizer(source)
        settings = _ready(GenerateSection(), TrainSection().seed)
        chat = has_chat_template(tokenizer)
        return VllmTarget(_absolute(str(model)), None, Path(model).name or str(model), settings, chat,
                          "sft" if chat else "text", _template_text(tokenizer), False, None)
    run_dir = resolve_run(target)
    recipe = load_run_recipe(run_dir)
    if recipe.task != "causal-lm":
        what = "seq2seq" if recipe.task == "seq2seq" else recipe.task
        raise UserError(f"{run_dir} is a {what} run; --engine vllm serves causal-lm runs",
                        hint="serve seq2seq runs with the default engine (leave out --engine); "
                        "classification runs with `ftcli eval`")
    settings = _ready(settings_with(recipe.generate), recipe.train.seed)
    tuned = run_dir / runs.MODEL_DIR
    tokenizer = load_tokenizer(local_model(tuned))
    weights, tokenizer_path, trust = str(tuned), None, False
    if base:
        source = _base_of(recipe)
        if source.name_or_path is None:
            raise UserError(f"{run_dir} started from a new, randomly initialised model (model.from_config): "
                            "its base has no weights for vLLM to load",
                            hint="serve its base with the default engine (leave out --engine)")
        if source.gguf_file:
            raise UserError(f"the base of {run_dir} is a GGUF file; --engine vllm serves Hugging Face folders",
                            hint="serve its base with the default engine (leave out --engine)")
        weights, tokenizer_path, trust = _absolute(source.name_or_path), str(tuned), source.trust_remote_code
    mode = (runs.read_train_results(run_dir) or {}).get("mode", "sft")
    if mode == "preference":
        mode = "sft"
    settings, chat = generation_format(tokenizer, recipe.data, settings) if mode == "sft" else (settings, False)
    return VllmTarget(weights, tokenizer_path, run_dir.name + ("-base" if base else ""), settings, chat, mode,
                      _template_text(tokenizer), trust, run_dir)


# --- the files vLLM reads: generation defaults and the chat template -------------------------------------

def _own_generation_config(model: str) -> dict:
    """The model's generation_config.json (its end tokens, ...): read from its folder, else from the hub
    (cached); {} when it has none. vLLM reads ours instead, so the rest of it must be kept."""
    file = Path(model) / "generation_config.json"
    if file.is_file():
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except ValueError:
            return {}
    if Path(model).exists():
        return {}
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(model).to_diff_dict()
    except (OSError, ValueError):
        return {}


def generation_config(target: VllmTarget, max_tokens: int) -> dict:
    """The model's generation_config.json with the run's generate: defaults as its sampling fields
    (max_new_tokens capped at `max_tokens`, as the default engine caps it)."""
    s = target.settings
    config = {k: v for k, v in _own_generation_config(target.model).items() if k not in SAMPLING_FIELDS}
    config.update(max_new_tokens=min(s.max_new_tokens, max_tokens), temperature=s.temperature,
                  repetition_penalty=s.repetition_penalty, do_sample=s.temperature > 0)
    if s.temperature > 0:
        config["top_p"] = s.top_p
        if s.top_k is not None:  # unset: no top-k (one a model's own file sets is dropped above)
            config["top_k"] = s.top_k
    return config


def jinja_literal(value: Any) -> str:
    """`value` (str, number, bool, None, list, dict) as a Jinja expression that evaluates to it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a Jinja string literal: Jinja decodes \n, \", \\ and \uXXXX as JSON writes them;
        # ensure_ascii=False keeps characters beyond the BMP whole (no surrogate pairs).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{jinja_literal(str(k))}: {jinja_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Jinja literal for {type(value).__name__}")


def _few_shot_messages(settings: GenerateSection) -> list[dict]:
    messages = []
    for e in settings.few_shot or []:
        messages += [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.response}]
    return messages


# Leading system (or developer) messages are the system prompt, joined as the default engine joins them;
# none: the run's generate.system_prompt.
_LEADING_SYSTEM = (
    "{%- set ftcli = namespace(n=0, lead=true) -%}"
    "{%- for m in messages -%}{%- if ftcli.lead and m['role'] in ['system', 'developer'] -%}"
    "{%- set ftcli.n = ftcli.n + 1 -%}{%- else -%}{%- set ftcli.lead = false -%}{%- endif -%}{%- endfor -%}"
)


def _chat_wrapper(settings: GenerateSection, base_template: str) -> str:
    """`base_template` with the run's system prompt first when a request has none, its few-shot
    examples as the turns before the request's, and its tools when the request has none: the
    messages `format_generation_prompt` hands the chat template."""
    system = [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    head = (_LEADING_SYSTEM
            + "{%- set messages = ([{'role': 'system', 'content': messages[:ftcli.n] | map(attribute='content')"
            " | join('\\n\\n')}] if ftcli.n else " + jinja_literal(system) + ") + "
            + jinja_literal(_few_shot_messages(settings)) + " + messages[ftcli.n:] -%}")
    if settings.tools:
        head += "{%- if not tools -%}{%- set tools = " + jinja_literal(settings.tools) + " -%}{%- endif -%}"
    # An expression, not a block, last: trim_blocks would eat a newline the base template starts with.
    return head + "{{ '' }}" + base_template


def _plain_template(settings: GenerateSection, mode: str) -> str:
    """A chat template that renders a chat as `format_generation_prompt` renders it without one:
    the system prompt and a blank line, each earlier (user, assistant) turn as a prompt block, a
    space unless the block ends in whitespace, the answer and a blank line, then the last prompt's block."""
    if settings.template is not None:
        block = jinja_literal(settings.template) + " | replace('{prompt}', text)"
    else:
        block = "text ~ '\\n'" if mode == "sft" else "text"
    return (
        "{%- macro ftcli_block(text) -%}{{ " + block + " }}{%- endmacro -%}"
        + _LEADING_SYSTEM
        + "{%- set ftcli_system = messages[:ftcli.n] | map(attribute='content') | join('\\n\\n') if ftcli.n else "
        + jinja_literal(settings.system_prompt or "") + " -%}"
        + "{%- set out = namespace(text=(ftcli_system ~ '\\n\\n') if ftcli_system else '', pending='') -%}"
        + "{%- set turns = " + jinja_literal(_few_shot_messages(settings)) + " + messages[ftcli.n:] -%}"
        "{%- for m in turns -%}"
        "{%- if m['role'] == 'user' -%}"
        "{%- if loop.last -%}{%- set out.text = out.text ~ ftcli_block(m['content'] or '') -%}"
        "{%- else -%}{%- set out.pending = ftcli_block(m['content'] or '') -%}{%- endif -%}"
        "{%- else -%}"
        "{%- set sep = '' if (out.pending[-1:] | trim) == '' else ' ' -%}"
        "{%- set out.text = out.text ~ out.pending ~ sep ~ (m['content'] or '') ~ '\\n\\n' -%}"
        "{%- set out.pending = '' -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{{ out.text }}"
    )


def chat_template(target: VllmTarget) -> str:
    """The chat template vLLM renders chats with: the run's (the tokenizer's own or ChatML) wrapped so
    that chats become the messages `ftcli generate` hands it, or the run's plain prompt format.
    Even a chat run with no system prompt needs the wrapper: leading system and developer messages
    are one system prompt, as the default engine makes them."""
    if not target.chat:
        return _plain_template(target.settings, target.mode)
    base = target.chat if isinstance(target.chat, str) else target.own_template
    if base is None:
        raise ModelError(f"the tokenizer of {target.model} has no chat template to render prompts with")
    return _chat_wrapper(target.settings, base)


def write_files(target: VllmTarget, folder: Path, max_tokens: int) -> tuple[Path, Path]:
    """The chat template file and the generation config folder, written in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config_dir = folder / "generation"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "generation_config.json").write_text(json.dumps(generation_config(target, max_tokens), indent=2),
                                                       encoding="utf-8")
    template_file = folder / "chat_template.jinja"
    template_file.write_text(chat_template(target), encoding="utf-8")
    return template_file, config_dir


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
