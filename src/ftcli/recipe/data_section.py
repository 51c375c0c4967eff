"""The recipe's `data:` section: where rows come from and how they become examples."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ftcli.recipe.section import Section

# data.template: names of built-in formats; anything else must be a custom string with {field} slots.
TEMPLATE_NAMES = ("auto", "chat", "chatml", "alpaca", "plain")
# ShareGPT's speakers (LLaMA-Factory's defaults) as chat roles; tool_call: the assistant's tool calls.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "function_call": "tool_call",
                  "observation": "tool"}


class DataSource(Section):
    """One source of rows: a local file or folder (path), a hub dataset (name), or two aligned text
    files of one example per line (source + target, e.g. a translation corpus)."""

    path: str | None = Field(None, description="A data file or folder.")
    name: str | None = Field(None, description="A Hugging Face Hub dataset id.")
    config: str | None = Field(None, description="Hub dataset: configuration (subset) name.")
    split: str = Field("train", description="Hub dataset: split to read.")
    revision: str | None = Field(None, description="Hub dataset: git revision (branch, tag or commit).")
    source: str | None = Field(None, description="Parallel text: the source-side file (one example per line).")
    target: str | None = Field(None, description="Parallel text: the target-side file, aligned line by line.")
    weight: float = Field(1.0, gt=0, description="Share in a mix: each row is used `weight` times on average "
                                                  "(2 → twice, 0.5 → a seeded half).")

    @model_validator(mode="after")
    def _one_kind(self) -> "DataSource":
        kinds = [k for k, on in (("path", self.path), ("name", self.name),
                                 ("source/target", self.source or self.target)) if on]
        if len(kinds) != 1:
            raise ValueError("set exactly one of path (a file or folder), name (a hub dataset), or "
                             f"source and target (parallel text files); got {', '.join(kinds) or 'none'}")
        if kinds == ["source/target"] and not (self.source and self.target):
            raise ValueError("parallel text needs both source and target files")
        hub_only = [k for k in ("config", "revision") if getattr(self, k) is not None]
        if hub_only and not self.name:
            raise ValueError(f"{', '.join(hub_only)} only apply to a hub dataset (name)")
        return self


# A data source as written in a recipe: a path or hub id, one source mapping, or a list to mix.
# A list mixes sources; an empty one would be a run with no data.
DataInput = str | DataSource | Annotated[list[str | DataSource], Field(min_length=1)]


class DataSection(Section):
    train: DataInput = Field(description="Training data: a .jsonl .json .csv .tsv .parquet or .txt file (each "
                                         "may be gzipped, .gz), a folder of them, a hub dataset id, a source "
                                         "mapping (path | name+config+split+revision | source+target), or a "
                                         "list of them mixed by weight.")
    eval: DataInput | None = Field(None, description="Eval data (same forms); if absent, eval_fraction of "
                                                     "train is held out.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Held-out share of train when eval is absent.")
    text_field: str = Field("text", description="Classification input, or plain-text causal-LM text.")
    label_field: str = Field("label", description="Classification label (ints or strings).")
    prompt_field: str = Field("prompt", description="SFT input (seq2seq: the source text).")
    response_field: str = Field("response", description="SFT target (seq2seq: the target text); loss only on "
                                                        "its tokens.")
    messages_field: str = Field("messages", description="SFT chats: a list of {role, content} turns (OpenAI's "
                                                        "form: assistant tool_calls and tool turns too).")
    chosen_field: str = Field("chosen", description="Preference pairs: the preferred reply (a string, or turns).")
    rejected_field: str = Field("rejected", description="Preference pairs: the reply not preferred.")
    tools_field: str = Field("tools", description="Chats: the field of each row's tool (function) schemas, a "
                                                  "list or its JSON string, passed to the chat template.")
    format: Literal["auto", "prompt_response", "alpaca", "messages", "prompt_completion", "sharegpt", "text"] = Field(
        "auto", description="Row format: prompt/response fields, alpaca (instruction/input/output), chat "
                            "messages, TRL's prompt/completion (strings, or lists of turns), ShareGPT "
                            "conversations ({from, value} turns), or plain text; auto picks from the fields the "
                            "data has.")
    roles: dict[str, Literal["user", "assistant", "system", "tool", "tool_call"]] = Field(
        default_factory=lambda: dict(SHAREGPT_ROLES),
        description="ShareGPT: each turn's 'from' and the chat role it is (tool_call: an assistant turn whose "
                    "value is a tool call's JSON; tool: a tool's result); the whole map (a 'from' it does not "
                    "name is an error).")
    template: str = Field(
        "auto", description="SFT prompt format: chat (the tokenizer's chat template; auto picks it when there "
                            "is one), chatml, alpaca, plain (the prompt and a newline), or a custom string with "
                            "{field} placeholders, e.g. '### Q: {prompt}\\n### A: '.")
    train_on_prompt: bool = Field(False, description="Also train on prompt tokens (default: loss on responses only).")
    assistant_turns: Literal["all", "last"] = Field("all", description="Chats: learn every assistant turn, or "
                                                                       "only the last.")
    source_prefix: str = Field("", description="seq2seq: text put before every source, e.g. "
                                               "'translate English to German: '.")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masked-lm: share of tokens masked.")
    max_length: int = Field(256, gt=0, description="Longer examples are truncated.")
    packing: bool = Field(False, description="causal-lm: each batch's examples end to end in one row, no "
                                             "padding; positions restart per example, so none attends to "
                                             "another (same loss as padded batches).")
    max_train_samples: int | None = Field(None, gt=0, description="Seeded random sample of N training rows.")
    normalize: bool = Field(True, description="Text fields in Unicode NFC with \\r\\n and \\r line ends as "
                                              "\\n; nothing else changes (whitespace and indentation are kept).")
    dedup: bool = Field(False, description="Drop exact duplicate rows (after normalising).")
    min_chars: int | None = Field(None, gt=0, description="Drop rows whose text fields are shorter in total.")
    max_chars: int | None = Field(None, gt=0, description="Drop rows whose text fields are longer in total.")
    cache: bool = Field(True, description="Reuse tokenized data from an earlier run with the same rows, "
                                          "tokenizer, data settings and versions of tokenizers, transformers "
                                          "and jinja2 (in $FTCLI_CACHE_DIR or ~/.cache/ftcli).")
    streaming: bool = Field(False, description="Read training files lazily, for data larger than memory "
                                               "(needs train.max_steps and train.dataloader_num_workers: 0; "
                                               "no dedup, held-out split or mixing). train.group_by_length "
                                               "groups within windows of 64 batches.")

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _some_data(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list names no data: give a file, folder, hub dataset or source mapping")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_name_speakers(cls, value: dict[str, str]) -> dict[str, str]:
        if not value or not all(k.strip() for k in value):
            raise ValueError("name each ShareGPT speaker ('from') and its role, e.g. {human: user, gpt: assistant}")
        return value

    @field_validator("template")
    @classmethod
    def _template_name_or_string(cls, value: str) -> str:
        if value not in TEMPLATE_NAMES and not ("{" in value and "}" in value):
            raise ValueError(f"'{value}' is neither a template name ({', '.join(TEMPLATE_NAMES)}) nor a "
                             "template string with {field} placeholders")
        return value
