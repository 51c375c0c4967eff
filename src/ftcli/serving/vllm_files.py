"""What `ftcli serve --engine vllm` hands vLLM: the target resolved as the default engine resolves it
(no weights loaded), and the two files vLLM reads, written outside the run directory: the generation
defaults (the run's `generate:` section over the model's own generation_config.json) and the chat
template that renders a chat as `ftcli generate` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from ftcli import runs
from ftcli.data.generation_prompts import generation_format
from ftcli.data.templates import has_chat_template
from ftcli.errors import ModelError, UserError
from ftcli.generation.load import base_of, is_encoder_decoder, _ready
from ftcli.generation.prompting import settings_with
from ftcli.modeling.load import check_model_source, load_tokenizer, local_model
from ftcli.recipe import GenerateSection, ModelSection, TrainSection, load_run_recipe, resolve_run

# The generation_config.json fields vLLM reads as default sampling parameters (ModelConfig.get_diff_sampling_param).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens",
                   "max_length", "do_sample")


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
        if is_encoder_decoder(source.name_or_path):
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
        source = base_of(recipe)
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
