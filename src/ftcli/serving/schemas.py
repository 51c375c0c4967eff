"""The OpenAI request bodies this server takes, strictly: pydantic models with `extra="forbid"`, and
the fields the OpenAI API defines that we do not implement sorted into two kinds.

* `IGNORED`: harmless to drop whatever their value (`user`, `metadata`, `store`, ...).
* `UNSUPPORTED`: they would change the answer (`logprobs`, `tools`, `response_format`, penalties,
  ...). Sent with a non-default value (not null, false, 0 or empty), they are a 400 naming the field,
  so a client never silently gets something other than what it asked for; with their default value
  (what some client libraries always send) they are dropped.

Any other unknown field is a 400 too. Responses are built as plain dicts in `app` (what the OpenAI
clients parse); only requests need validating.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
           "safety_identifier"}
UNSUPPORTED = {"logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "tools",
               "tool_choice", "functions", "function_call", "response_format", "modalities", "audio",
               "prediction", "reasoning_effort", "web_search_options", "verbosity", "best_of", "echo", "suffix"}
MAX_STOPS = 4  # as the OpenAI API


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # accepted and ignored: the chat template has no place for it

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """Fields both endpoints share. Unset ones come from the run's `generate:` section."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


def _is_default(value) -> bool:
    return value is None or value is False or value == 0 or value in ({}, [], "")


def screen_fields(body: dict) -> tuple[dict, str | None]:
    """`body` without the ignored fields (and unsupported ones left at their defaults), and the first
    unsupported field set to something else (None when there is none)."""
    kept = {}
    for key, value in body.items():
        if key in IGNORED or (key in UNSUPPORTED and _is_default(value)):
            continue
        if key in UNSUPPORTED:
            return kept, key
        kept[key] = value
    return kept, None
