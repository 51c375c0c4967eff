"""The HTTP routes (FastAPI): `/v1/models`, `/v1/chat/completions`, `/v1/completions` (each with
`stream: true` as server-sent events in OpenAI's chunk format, ending `data: [DONE]`), `/health`, the
page at `/` and its facts at `/ftcli/run`.

FastAPI is imported here, so only `ftcli serve` imports this module (lazily). Bodies are read and
validated here rather than by FastAPI, so that every refusal (too large, not
JSON, a bad or unsupported field) is a 400/413 in the OpenAI error shape naming the field.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ftcli.generation.load import Loaded
from ftcli.progress import log
from ftcli.serving.api_errors import ApiError, bad_request, from_validation
from ftcli.serving.auth import check_key
from ftcli.serving.engine import Engine, Job
from ftcli.serving.page import PAGE
from ftcli.serving.requests import Limits, check_fits, prepare_chat, prepare_completion
from ftcli.serving.schemas import ChatRequest, CompletionRequest, screen_fields


@dataclass
class Served:
    loaded: Loaded
    engine: Engine
    model_id: str
    info: dict
    api_key: str | None = None
    limits: Limits = Limits()


async def _read_json(request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    try:
        data = json.loads(body)
    except ValueError:
        raise bad_request("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    return data


def _validated(model, data: dict, served: Served):
    from pydantic import ValidationError

    kept, unsupported = screen_fields(data)
    if unsupported:
        raise bad_request(f"{unsupported!r} is not supported by this server (ftcli serve)", param=unsupported,
                          code="unsupported_field")
    try:
        req = model.model_validate(kept)
    except ValidationError as exc:
        raise from_validation(exc) from None
    if req.model != served.model_id:
        raise ApiError(404, f"the model {req.model!r} is not served here; this server serves {served.model_id!r}",
                       param="model", code="model_not_found")
    return req


def _sse(data) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Answer:
    """Collects a job's events: each choice's text, finish reason and tokens."""

    def __init__(self, choices: int):
        self.texts = [""] * choices
        self.finish = [None] * choices
        self.tokens = 0
        self.open = choices

    def take(self, event) -> tuple[int, str] | None:
        """Apply one event; returns (choice, delta text) for a delta, raises for an error."""
        kind = event[0]
        if kind == "error":
            raise event[1]
        if kind == "delta":
            self.texts[event[1]] += event[2]
            return event[1], event[2]
        self.finish[event[1]], self.open = event[2], self.open - 1
        self.tokens += event[3]
        return None


def create_app(served: Served) -> FastAPI:
    def auth(request: Request) -> None:
        check_key(served.api_key, request.headers.get("authorization"))

    app = FastAPI(title="ftcli serve", docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(dependencies=[Depends(auth)])

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request, exc: HTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(ApiError(exc.status_code, str(exc.detail), type=kind).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):  # a bug: a short message to the client, the cause logged
        log(f"serve: internal error on {request.url.path}: {type(exc).__name__}: {exc}")
        return JSONResponse(ApiError(500, "internal server error", type="server_error").body(), status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)  # no data in it: what it shows comes from the key-checked /ftcli/run

    @api.get("/health")
    async def health():
        return {"status": "ok", "model": served.model_id, **served.engine.load()}

    @api.get("/ftcli/run")
    async def run_info():
        return served.info

    @api.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served.model_id, "object": "model", "created": int(time.time()),
                                            "owned_by": "ftcli"}]}

    async def _run(prepared, chat: bool, req):
        check_fits(prepared, served.engine.max_batch)
        job = Job(prepared.rows(), prepared.settings, prepared.seed, asyncio.get_running_loop())
        served.engine.submit(job)
        prompt_tokens = sum(len(ids) for ids in prepared.prompts)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        head = {"id": ident, "created": int(time.time()), "model": served.model_id}
        answer = _Answer(len(job.rows))

        def usage() -> dict:
            return {"prompt_tokens": prompt_tokens, "completion_tokens": answer.tokens,
                    "total_tokens": prompt_tokens + answer.tokens}

        if not req.stream:
            try:
                while answer.open:
                    answer.take(await job.events.get())
            finally:
                job.cancelled = answer.open > 0  # the client left (or an error): its rows stop
            if chat:
                choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": f}
                           for i, (t, f) in enumerate(zip(answer.texts, answer.finish))]
                return {**head, "object": "chat.completion", "choices": choices, "usage": usage()}
            choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": f}
                       for i, (t, f) in enumerate(zip(answer.texts, answer.finish))]
            return {**head, "object": "text_completion", "choices": choices, "usage": usage()}

        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(index: int, text: str | None = None, finish=None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else {} if text is None else {"content": text}
                choice = {"index": index, "delta": delta, "finish_reason": finish}
            else:
                choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            return _sse({**head, "object": kind, "choices": [choice]})

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def events():
            try:
                if chat:
                    for i in range(len(job.rows)):
                        yield chunk(i, role=True)
                while answer.open:
                    event = await job.events.get()
                    try:
                        got = answer.take(event)
                    except ApiError as exc:
                        yield _sse(exc.body())
                        return
                    if got is not None:
                        yield chunk(*got)
                    elif event[0] == "done":
                        yield chunk(event[1], finish=event[2])
                if include_usage:
                    yield _sse({**head, "object": kind, "choices": [], "usage": usage()})
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled = answer.open > 0  # a client that went away mid-stream: its rows are dropped

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = _validated(ChatRequest, await _read_json(request, served.limits.max_body_bytes), served)
        return await _run(prepare_chat(served.loaded, req, served.limits), True, req)

    @api.post("/v1/completions")
    async def completions(request: Request):
        req = _validated(CompletionRequest, await _read_json(request, served.limits.max_body_bytes), served)
        return await _run(prepare_completion(served.loaded, req, served.limits), False, req)

    app.include_router(api)
    return app
