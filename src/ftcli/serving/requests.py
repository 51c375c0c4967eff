"""A validated request as generation sees it: the prompt rendered exactly as `ftcli generate` renders
it (generation's own `prompt_ids`: chat template, system prompt, few-shot examples, the run's
`generate:` defaults) and the settings it decodes with, checked against the server's limits.

Chat messages map onto generation's conversation: leading system (or developer) messages are the
system prompt (replacing `generate.system_prompt`), then user and assistant turns alternate, ending
with the user's; earlier turns are the history `ftcli generate --interactive` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.errors import UserError
from ftcli.generation.batched import prompt_ids
from ftcli.generation.load import Loaded
from ftcli.generation.prompting import check_settings, few_shot_examples, settings_with
from ftcli.recipe import GenerateSection
from ftcli.serving.api_errors import ApiError, bad_request
from ftcli.serving.schemas import MAX_STOPS, ChatRequest, CompletionRequest, Message


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 1024  # the most new tokens one answer may ask for
    max_body_bytes: int = 1 << 20  # the largest request body
    max_prompt_tokens: int | None = None  # None: the model's context less the answer


@dataclass
class Prepared:
    prompts: list[list[int]]  # token ids per prompt
    settings: GenerateSection
    n: int
    seed: int | None

    def rows(self) -> list[list[int]]:
        """Every answer's prompt ids: each prompt n times, in choice order."""
        return [ids for ids in self.prompts for _ in range(self.n)]


def _settings(loaded: Loaded, req, limits: Limits, system_prompt: str | None = None) -> GenerateSection:
    stops = req.stops()
    if stops is not None and len(stops) > MAX_STOPS:
        raise bad_request(f"stop takes at most {MAX_STOPS} strings", param="stop")
    max_new = req.max_new_tokens()
    if max_new is not None and max_new > limits.max_tokens:
        raise bad_request(f"max_tokens is {max_new}; this server allows at most {limits.max_tokens}",
                          param="max_tokens", code="max_tokens_too_large")
    try:
        settings = settings_with(loaded.settings, max_new_tokens=max_new, temperature=req.temperature,
                                 top_p=req.top_p, stop=stops, num_return_sequences=req.n)
        if system_prompt is not None:
            settings = settings.model_copy(update={"system_prompt": system_prompt})
        check_settings(settings)
    except UserError as exc:
        param = "n" if "num_return_sequences" in exc.message else None
        raise bad_request(exc.message.replace("num_return_sequences", "n")
                          + (f" ({exc.hint})" if exc.hint else ""), param=param) from None
    if settings.max_new_tokens > limits.max_tokens:  # the run's own default may be larger
        settings = settings.model_copy(update={"max_new_tokens": limits.max_tokens})
    return settings


def _check_length(loaded: Loaded, ids: list[int], settings: GenerateSection, limits: Limits, param: str) -> None:
    context = getattr(loaded.model.config, "max_position_embeddings", None)
    limit = limits.max_prompt_tokens
    if context is not None and not loaded.model.config.is_encoder_decoder:
        limit = min(limit or context, context - settings.max_new_tokens)
    if limit is not None and len(ids) > limit:
        raise bad_request(f"the prompt is {len(ids)} tokens; with max_tokens {settings.max_new_tokens} at most "
                          f"{max(limit, 0)} fit this model", param=param, code="context_length_exceeded")


def _conversation(messages: list[Message]) -> tuple[str | None, list[tuple[str, str]], str]:
    """(system prompt or None, earlier (user, assistant) turns, the last user message)."""
    system = []
    rest = list(messages)
    while rest and rest[0].role in ("system", "developer"):
        system.append(rest.pop(0).text())
    roles = [m.role for m in rest]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(rest))]
    if not rest or roles != expected or roles[-1] != "user":
        raise bad_request("messages must be optional system messages, then user and assistant messages taking "
                          "turns, ending with a user message", param="messages")
    turns = [(rest[i].text(), rest[i + 1].text()) for i in range(0, len(rest) - 1, 2)]
    return ("\n\n".join(system) if system else None), turns, rest[-1].text()


def prepare_chat(loaded: Loaded, req: ChatRequest, limits: Limits) -> Prepared:
    system, history, prompt = _conversation(req.messages)
    settings = _settings(loaded, req, limits, system_prompt=system)
    if history and loaded.mode == "seq2seq":
        raise bad_request("a seq2seq model encodes one prompt: send a single user message", param="messages")
    try:
        ids = prompt_ids(loaded.tokenizer, prompt, settings, loaded.chat, loaded.mode, history=history,
                         examples=few_shot_examples(settings))
    except UserError as exc:
        raise bad_request(exc.message, param="messages") from None
    _check_length(loaded, ids, settings, limits, "messages")
    return Prepared([ids], settings, req.n, req.seed)


def prepare_completion(loaded: Loaded, req: CompletionRequest, limits: Limits) -> Prepared:
    settings = _settings(loaded, req, limits)
    prompts = req.prompts()
    if not prompts:
        raise bad_request("prompt is an empty list", param="prompt")
    examples = few_shot_examples(settings)
    try:
        ids = [prompt_ids(loaded.tokenizer, p, settings, loaded.chat, loaded.mode, examples=examples) for p in prompts]
    except UserError as exc:
        raise bad_request(exc.message, param="prompt") from None
    for one in ids:
        _check_length(loaded, one, settings, limits, "prompt")
    return Prepared(ids, settings, req.n, req.seed)


def check_fits(prepared: Prepared, max_batch: int) -> None:
    if len(prepared.rows()) > max_batch:
        raise ApiError(400, f"{len(prepared.rows())} answers (prompts × n) in one request; this server "
                       f"generates at most {max_batch} at once", param="n", code="too_many_choices")
