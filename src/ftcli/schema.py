"""The recipe schema: one strict pydantic model of everything a run needs, with its defaults.

Strictness is the point: every section forbids unknown keys (a misspelled key is an error that
suggests the closest valid key, never a silent fall-back to a default), numbers must be finite,
and booleans are never read as numbers. `ftcli.schema_reference` renders it as commented YAML.
Reading, validating and reporting recipes lives in `ftcli.recipe`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


TASKS = ("causal-lm", "sequence-classification", "seq2seq", "masked-lm")
Task = Literal["causal-lm", "sequence-classification", "seq2seq", "masked-lm"]

# Metrics each task can report, and the ones it reports when the recipe names none.
# Scored on generated responses (causal-lm SFT), so `ftcli eval` generates when one is asked for.
GENERATION_METRICS = ("exact_match", "rouge", "bleu", "chrf")
TASK_METRICS = {
    "sequence-classification": ("accuracy", "f1", "precision", "recall", "matthews_correlation"),
    "causal-lm": ("perplexity", "loss") + GENERATION_METRICS,
    "seq2seq": ("loss", "perplexity") + GENERATION_METRICS,
    "masked-lm": ("perplexity", "loss"),
}
# What training can select the best checkpoint by (generation is too slow to run at every eval).
BEST_MODEL_METRICS = {
    "sequence-classification": ("loss",) + TASK_METRICS["sequence-classification"],
    "causal-lm": ("loss", "perplexity"),
    "seq2seq": ("loss", "perplexity"),
    "masked-lm": ("loss", "perplexity"),
}
DEFAULT_METRICS = {
    "sequence-classification": ["accuracy", "f1"],
    "causal-lm": ["perplexity", "loss"],
    "seq2seq": ["loss", "bleu", "chrf"],
    "masked-lm": ["perplexity", "loss"],
}
# data.template: names of built-in formats; anything else must be a custom string with {field} slots.
TEMPLATE_NAMES = ("auto", "chat", "chatml", "alpaca", "plain")


class Section(BaseModel):
    # extra="forbid": unknown keys are errors; allow_inf_nan=False: `.nan`/`.inf` never reach training.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        # pydantic would read `batch_size: true` as 1; in a recipe that is always a mistake.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and bool not in getattr(annotation, "__args__", (annotation,)):
            raise ValueError(f"expected {_type_name(annotation)}, not a boolean")
        return value


class ModelSection(Section):
    name_or_path: str | None = Field(None, description="Local model directory, a finished ftcli run (its model/) or hub id.",
                                     json_schema_extra={"example": "models/smollm2-135m-instruct"})
    from_config: dict[str, Any] | None = Field(
        None, description="Instead of name_or_path: a new, randomly initialised model (seeded). "
                          "`architecture` is a transformers model type (llama, gpt2, bert, t5, ...); the "
                          "other keys are that config class's own fields (hidden_size, num_hidden_layers, ...).")
    gguf_file: str | None = Field(None, description="A .gguf file inside name_or_path to load from.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with a hub model. Off: a "
                                                       "recipe never executes downloaded code unless asked.")
    allow_pickle_weights: bool = Field(False, description="Allow pickle (.bin) weights, which can run code "
                                                          "when loaded; safetensors only otherwise.")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.name_or_path is None) == (self.from_config is None):
            raise ValueError("set one of name_or_path (a model to fine-tune) or from_config (a new model "
                             "to train from scratch)")
        if self.from_config is not None and self.gguf_file:
            raise ValueError("gguf_file loads pretrained weights; it cannot be combined with from_config")
        return self


class TokenizerTraining(Section):
    vocab_size: int = Field(2000, ge=64, description="Vocabulary size, special tokens included.")
    type: Literal["bpe", "unigram"] = Field("bpe", description="Byte-level BPE, or Unigram (SentencePiece-style).")
    min_frequency: int = Field(2, gt=0, description="BPE: a pair must occur this often to be merged.")


class TokenizerSection(Section):
    """Which tokenizer a run uses; absent → the model's own (model.name_or_path)."""

    name_or_path: str | None = Field(None, description="An existing tokenizer (model directory, finished ftcli run or hub id).")
    train: TokenizerTraining | None = Field(None, description="Train a new tokenizer on the training text "
                                                              "(for model.from_config); saved with the run.")

    @model_validator(mode="after")
    def _one_source(self) -> "TokenizerSection":
        if (self.name_or_path is None) == (self.train is None):
            raise ValueError("set one of name_or_path (an existing tokenizer) or train (a new one)")
        return self


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
    messages_field: str = Field("messages", description="SFT chats: a list of {role, content} turns.")
    format: Literal["auto", "prompt_response", "alpaca", "messages", "text"] = Field(
        "auto", description="Row format: prompt/response fields, alpaca (instruction/input/output), chat "
                            "messages, or plain text; auto picks from the fields the data has.")
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
    normalize: bool = Field(True, description="Unicode NFC, Windows line ends to \\n, and surrounding "
                                              "whitespace stripped from text fields.")
    dedup: bool = Field(False, description="Drop exact duplicate rows (after normalising).")
    min_chars: int | None = Field(None, gt=0, description="Drop rows whose text fields are shorter in total.")
    max_chars: int | None = Field(None, gt=0, description="Drop rows whose text fields are longer in total.")
    cache: bool = Field(True, description="Reuse tokenized data from an earlier run with the same rows, "
                                          "tokenizer and data settings (in $FTCLI_CACHE_DIR or ~/.cache/ftcli).")
    streaming: bool = Field(False, description="Read training files lazily, for data larger than memory "
                                               "(needs train.max_steps; no dedup, held-out split or mixing).")

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _some_data(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list names no data: give a file, folder, hub dataset or source mapping")
        return value

    @field_validator("template")
    @classmethod
    def _template_name_or_string(cls, value: str) -> str:
        if value not in TEMPLATE_NAMES and not ("{" in value and "}" in value):
            raise ValueError(f"'{value}' is neither a template name ({', '.join(TEMPLATE_NAMES)}) nor a "
                             "template string with {field} placeholders")
        return value


class LoraSection(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="'all-linear' or module names.")


# Tokens per forward/backward pass. SmolLM2-135M + LoRA in fp32 keeps ~3 MB per token for backward:
# on the sft benchmark (bench/levers.py) passes of 512 tokens peak at 2.7 GB and 162 tokens/s, of
# 1,024 at 4.3 GB and 174 tokens/s, whole batches at 7.3 GB and 177 tokens/s.
MICRO_BATCH_TOKENS = 512


class TrainSection(Section):
    """Short forms of TrainingArguments: epochs = num_train_epochs, batch_size = per-device train
    batch size, eval_batch_size = per-device eval batch size. Other keys keep TrainingArguments' names."""

    output_dir: str = "runs/demo"
    epochs: float = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0, description="Overrides epochs when set.")
    batch_size: int = Field(8, gt=0)
    eval_batch_size: int | None = Field(None, gt=0, description="Defaults to batch_size.")
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(2.0e-4, gt=0)
    lr_scheduler_type: str = "linear"
    warmup_steps: float = Field(0, ge=0, description="Steps, or a fraction of all steps when < 1.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    save_steps: int | None = Field(None, gt=0, description="null → save at the end of each epoch.")
    save_total_limit: int | None = Field(2, gt=0, description="Checkpoints kept on disk.")
    logging_steps: int = Field(10, gt=0)
    eval_strategy: Literal["no", "steps", "epoch"] = Field(
        "no", description="Evaluate on the eval split during training: every eval_steps, or each epoch.")
    eval_steps: int | None = Field(None, gt=0, description="With eval_strategy: steps (default logging_steps).")
    load_best_model_at_end: bool = Field(False, description="Save the best checkpoint's model as model/ "
                                                             "(by metric_for_best_model); needs eval data.")
    metric_for_best_model: str = Field("loss", description="Any eval metric of the task, or loss.")
    early_stopping_patience: int | None = Field(None, gt=0, description="Stop after this many evaluations "
                                                                        "without improvement (implies "
                                                                        "load_best_model_at_end).")
    gradient_checkpointing: bool = False
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding, "
                                                    "shuffled batch order); false → plain random order.")
    micro_batch_tokens: int | None = Field(MICRO_BATCH_TOKENS, gt=0, description=(
        "causal-lm: run each batch in forward/backward passes of at most this many tokens "
        "(same gradients, bounded activation memory); null → the whole batch at once."))
    dataloader_num_workers: int = Field(0, ge=0, description="Worker processes preparing batches (0 → in "
                                                             "the training process).")
    torch_compile: bool = Field(False, description="Compile the model with torch.compile (slow to start; "
                                                   "measure before relying on it).")
    on_nonfinite_loss: Literal["stop", "skip"] = Field("stop", description="On a NaN/inf loss: stop (exit 3, "
                                                       "keeping the last good checkpoint) or skip the batch.")
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "none"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment tracking: tensorboard (<output_dir>/logs), mlflow ($MLFLOW_TRACKING_URI, "
                    "else ./mlflow.db), wandb, or none. Nothing is sent anywhere unless you configure it.")

    @field_validator("report_to")
    @classmethod
    def _report_to_alone_or_once(cls, value: list[str]) -> list[str]:
        if "none" in value and len(value) > 1:
            raise ValueError("'none' cannot be combined with other trackers")
        if twice := sorted({name for name in value if value.count(name) > 1}):
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return value


# TrainingArguments' FSDP options (transformers 5): sharding strategy, plus offload / auto_wrap.
FSDP_OPTIONS = ("full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2", "no_shard",
                "offload", "auto_wrap")


class DistributedSection(Section):
    """Passed through to TrainingArguments for runs under a launcher (`--nproc`, torchrun, accelerate
    launch). Plain DDP needs none of it; FSDP and DeepSpeed are the engines' own options."""

    fsdp: str | list[str] | None = Field(None, description="FSDP: e.g. 'full_shard auto_wrap' or a list of "
                                                             + ", ".join(FSDP_OPTIONS) + ".")
    fsdp_config: dict[str, Any] | str | None = Field(None, description="FSDP config: a mapping, or a JSON "
                                                                        "file (TrainingArguments' fsdp_config).")
    deepspeed: str | dict[str, Any] | None = Field(None, description="DeepSpeed config: a JSON file (see "
                                                                      "recipes/deepspeed/) or a mapping.")
    ddp_find_unused_parameters: bool | None = Field(None, description="DDP: look for parameters without "
                                                                       "gradients (slower); null → Trainer's choice.")
    ddp_timeout: int | None = Field(None, gt=0, description="Seconds a process waits for the others.")

    @field_validator("fsdp")
    @classmethod
    def _known_fsdp_options(cls, value):
        if value is None:
            return value
        options = value.split() if isinstance(value, str) else value
        unknown = [o for o in options if o not in FSDP_OPTIONS]
        if unknown:
            raise ValueError(f"unknown FSDP option(s) {', '.join(map(repr, unknown))}; "
                             f"choose from {', '.join(FSDP_OPTIONS)}")
        if not options:
            raise ValueError("name at least one FSDP option, or leave fsdp out")
        return " ".join(options)

    @model_validator(mode="after")
    def _one_engine(self) -> "DistributedSection":
        if self.fsdp and self.deepspeed:
            raise ValueError("fsdp and deepspeed are two ways of sharding a model; choose one")
        if self.fsdp_config is not None and not self.fsdp:
            raise ValueError("fsdp_config needs fsdp (e.g. fsdp: full_shard auto_wrap)")
        return self


class EvalSection(Section):
    metrics: list[str] | None = Field(None, min_length=1, description="Defaults per task: classification accuracy+f1, "
                                                         "causal-lm perplexity+loss.")
    batch_size: int = Field(16, gt=0)
    generate: bool = Field(False, description="causal-lm SFT: also generate responses for the eval rows "
                                              "and score them (exact_match and rouge unless metrics name "
                                              "others); naming a generation metric implies it.")


class FewShotExample(Section):
    prompt: str
    response: str


class GenerateSection(Section):
    max_new_tokens: int = Field(64, gt=0)
    temperature: float = Field(0.0, ge=0, description="0 → greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, gt=0, description="Sample only among the k most likely tokens.")
    repetition_penalty: float = Field(1.0, gt=0, description="> 1 discourages repeating tokens.")
    num_return_sequences: int = Field(1, gt=0, description="Answers per prompt (sampling only).")
    stop: list[str] = Field(default_factory=list, description="Stop strings: generation ends at the first.")
    seed: int | None = Field(None, description="Sampling seed; defaults to train.seed.")
    batch_size: int = Field(8, gt=0, description="Prompts per batch for --file and eval.generate.")
    system_prompt: str | None = Field(None, description="Chat models: a system message before the prompt.")
    template: str | None = Field(None, description="Base models: a prompt template with a {prompt} "
                                                   "placeholder, e.g. 'Q: {prompt}\\nA:'.")
    few_shot: list[FewShotExample] | str | None = Field(
        None, description="Example prompt/response pairs (or a .jsonl file of them) placed before the "
                          "prompt in the model's format.")


class Recipe(Section):
    task: Task
    model: ModelSection
    tokenizer: TokenizerSection | None = Field(None, description="Absent → the model's own tokenizer.")
    data: DataSection
    lora: LoraSection | None = Field(None, description="Present → LoRA (peft); absent → full fine-tune.")
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)
    distributed: DistributedSection | None = Field(None, description="FSDP / DeepSpeed / DDP options for "
                                                                     "multi-process runs.")

    @model_validator(mode="after")
    def _best_model_needs_evaluation(self) -> "Recipe":
        t = self.train
        if (t.load_best_model_at_end or t.early_stopping_patience) and t.eval_strategy == "no":
            key = "load_best_model_at_end" if t.load_best_model_at_end else "early_stopping_patience"
            raise ValueError(f"train.{key} needs evaluation during training: set train.eval_strategy "
                             "to steps or epoch")
        return self

    @model_validator(mode="after")
    def _tokenizer_fits_model(self) -> "Recipe":
        from_config = self.model.from_config is not None
        if from_config and self.tokenizer is None:
            raise ValueError("model.from_config builds a new model with no tokenizer: set tokenizer.train "
                             "(a new vocabulary) or tokenizer.name_or_path (an existing one)")
        if self.tokenizer and self.tokenizer.train and not from_config:
            raise ValueError("tokenizer.train builds a new vocabulary, which a pretrained model cannot use: "
                             "it needs model.from_config")
        return self

    @model_validator(mode="after")
    def _streaming_needs_max_steps(self) -> "Recipe":
        if self.data.streaming and self.train.max_steps is None:
            raise ValueError("data.streaming reads the data lazily, so its length is unknown: set "
                             "train.max_steps")
        return self

    @model_validator(mode="after")
    def _packing_is_for_causal_lm(self) -> "Recipe":
        if self.data.packing and self.task != "causal-lm":
            raise ValueError(f"data.packing is for causal-lm; task {self.task} pads its batches")
        return self

    @model_validator(mode="after")
    def _default_metrics(self) -> "Recipe":
        if self.eval.metrics is None:
            self.eval.metrics = list(DEFAULT_METRICS[self.task])
        return self


def _type_name(annotation) -> str:
    members = getattr(annotation, "__args__", (annotation,))
    return " or ".join(getattr(m, "__name__", str(m)) for m in members if m is not type(None))


def _nested_model(annotation) -> type[BaseModel] | None:
    """The schema class inside an annotation such as `LoraSection | None` or `list[FewShotExample]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _nested_model(arg)) is not None:
            return found
    return None
