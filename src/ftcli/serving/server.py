"""Starting the server: the target loaded as `ftcli generate` loads it (`load_for_generation`: a run
dir, a recipe, the latest finished run, `base`, or any `model`), the engine, the app, and uvicorn.

`--engine vllm` hands the same target to vLLM's own server instead (`vllm_server`).

`serve` blocks until Ctrl-C; `running_server` starts one in a background thread (port 0 picks a free
port) for tests and the load benchmark, and stops it cleanly on exit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from pathlib import Path

from ftcli.errors import UserError
from ftcli.generation.load import load_for_generation
from ftcli.progress import log
from ftcli.recipe import load_run_recipe, resolve_run
from ftcli.serving.app import Served, create_app
from ftcli.serving.auth import api_key_from
from ftcli.serving.engine import Engine
from ftcli.serving.requests import Limits
from ftcli.serving.run_info import describe_run
from ftcli.serving.vllm_server import serve_vllm

ENGINES = ("transformers", "vllm")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("ftcli serve needs FastAPI and uvicorn", hint="pip install 'ftcli[serve]' "
                        "(make install includes it)") from None


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    # Found, not imported: vLLM runs in its own process (importing it here would load torch and CUDA twice).
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UserError("--engine vllm needs vLLM, which is not installed here",
                        hint="vLLM runs on CUDA GPUs: pip install vllm there, or leave out --engine")


def build(target: str | Path | None = None, base: bool = False, model: str | None = None,
          api_key: str | None = None, max_batch: int = 16, max_queue: int = 64,
          limits: Limits | None = None) -> Served:
    """Everything the app serves, model loaded. `api_key` None: FTCLI_API_KEY, else no key."""
    _require_serve_extra()
    if model is None:
        run_dir = resolve_run(target)
        recipe = load_run_recipe(run_dir)
        model_id, base_model = run_dir.name + ("-base" if base else ""), recipe.model.name_or_path
    else:
        if target is not None or base:
            raise UserError("--model serves a model directly; it cannot be combined with a run or --base")
        run_dir, model_id, base_model = None, Path(model).name or str(model), str(model)
    loaded = load_for_generation(run_dir, base=base, model=model)
    engine = Engine(loaded.model, loaded.tokenizer, max_batch=max_batch, max_queue=max_queue)
    info = describe_run(run_dir, model_id, base_model, base)
    return Served(loaded, engine, model_id, info, api_key_from(api_key), limits or Limits())


def _uvicorn_server(served: Served, host: str, port: int):
    import uvicorn

    config = uvicorn.Config(create_app(served), host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def serve(target: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          base: bool = False, model: str | None = None, engine: str = "transformers", max_batch: int = 16,
          max_queue: int = 64, max_tokens: int = 1024) -> None:
    """Serve a run's tuned model (or its base, or any model) on an OpenAI-compatible API until Ctrl-C:
    with ftcli's engine, or (engine "vllm") through vLLM's own server in a child process."""
    _check_engine(engine)
    if engine == "vllm":
        key = api_key_from(api_key)
        if host not in LOOPBACK and key is None:
            log(f"serving on {host} with no API key: anyone who can reach this port can use the model "
                "(--api-key or FTCLI_API_KEY)")
        serve_vllm(target, host=host, port=port, api_key=key, base=base, model=model, max_tokens=max_tokens)
        return
    _require_serve_extra()
    served = build(target, base=base, model=model, api_key=api_key, max_batch=max_batch, max_queue=max_queue,
                   limits=Limits(max_tokens=max_tokens))
    if host not in LOOPBACK and served.api_key is None:
        log(f"serving on {host} with no API key: anyone who can reach this port can use the model "
            "(--api-key or FTCLI_API_KEY)")
    server = _uvicorn_server(served, host, port)
    log(f"serving {served.model_id} on http://{host}:{port}/ (OpenAI API under /v1; Ctrl-C stops)")
    try:
        server.run()
    finally:
        served.engine.close()


@contextlib.contextmanager
def running_server(served: Served, host: str = "127.0.0.1", port: int = 0):
    """A server for `served` in a background thread; yields its base URL (http://host:port)."""
    server = _uvicorn_server(served, host, port)
    thread = threading.Thread(target=server.run, name="ftcli-serve-http", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            thread.join(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
