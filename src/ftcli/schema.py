"""The recipe schema: one strict pydantic model of everything a run needs, with its defaults.

Strictness is the point: every section forbids unknown keys (a misspelled key is an error that
suggests the closest valid key, never a silent fall-back to a default), numbers must be finite,
and booleans are never read as numbers. `reference_yaml` renders the schema as commented YAML.
Reading, validating and reporting recipes lives in `ftcli.recipe`.
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


TASKS = ("causal-lm", "sequence-classification")
Task = Literal["causal-lm", "sequence-classification"]

# Metrics each task can report, and the ones it reports when the recipe names none.
# Scored on generated responses (causal-lm SFT), so `ftcli eval` generates when one is asked for.
GENERATION_METRICS = ("exact_match", "rouge", "bleu", "chrf")
TASK_METRICS = {
    "sequence-classification": ("accuracy", "f1", "precision", "recall", "matthews_correlation"),
    "causal-lm": ("perplexity", "loss") + GENERATION_METRICS,
}
# What training can select the best checkpoint by (generation is too slow to run at every eval).
BEST_MODEL_METRICS = {
    "sequence-classification": ("loss",) + TASK_METRICS["sequence-classification"],
    "causal-lm": ("loss", "perplexity"),
}
DEFAULT_METRICS = {
    "sequence-classification": ["accuracy", "f1"],
    "causal-lm": ["perplexity", "loss"],
}


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
    name_or_path: str = Field("models/smollm2-135m-instruct", description="Local model directory or hub id.")
    gguf_file: str | None = Field(None, description="A .gguf file inside name_or_path to load from.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with a hub model. Off: a "
                                                       "recipe never executes downloaded code unless asked.")
    allow_pickle_weights: bool = Field(False, description="Allow pickle (.bin) weights, which can run code "
                                                          "when loaded; safetensors only otherwise.")


class DataSection(Section):
    train: str = Field(description="Training data: a .jsonl .json .csv .tsv .parquet or .txt file (each may be "
                                   "gzipped, .gz), a folder of them, or a hub dataset id.")
    eval: str | None = Field(None, description="Eval data; if absent, eval_fraction of train is held out.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Held-out share of train when eval is absent.")
    text_field: str = Field("text", description="Classification input, or plain-text causal-LM text.")
    label_field: str = Field("label", description="Classification label (ints or strings).")
    prompt_field: str = Field("prompt", description="Causal-LM SFT input.")
    response_field: str = Field("response", description="Causal-LM SFT target; loss only on its tokens.")
    template: Literal["auto", "chat", "plain"] = Field(
        "auto", description="SFT prompt format: the tokenizer's chat template (chat; auto when it has one) "
                            "or the plain prompt and a newline (plain).")
    max_length: int = Field(256, gt=0, description="Longer examples are truncated.")
    max_train_samples: int | None = Field(None, gt=0, description="Seeded random sample of N training rows.")


class LoraSection(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="'all-linear' or module names.")


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
    on_nonfinite_loss: Literal["stop", "skip"] = Field("stop", description="On a NaN/inf loss: stop (exit 3, "
                                                       "keeping the last good checkpoint) or skip the batch.")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="Trainer integrations.")


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
    data: DataSection
    lora: LoraSection | None = Field(None, description="Present → LoRA (peft); absent → full fine-tune.")
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    generate: GenerateSection = Field(default_factory=GenerateSection)

    @model_validator(mode="after")
    def _best_model_needs_evaluation(self) -> "Recipe":
        t = self.train
        if (t.load_best_model_at_end or t.early_stopping_patience) and t.eval_strategy == "no":
            key = "load_best_model_at_end" if t.load_best_model_at_end else "early_stopping_patience"
            raise ValueError(f"train.{key} needs evaluation during training: set train.eval_strategy "
                             "to steps or epoch")
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


def reference_yaml() -> str:
    """Every recipe key with its default and description, as commented YAML: the recipe reference in
    README and `ftcli schema` both come from here, so the docs cannot drift from the schema."""
    lines = ["task: causal-lm  # required: " + " | ".join(TASKS)]

    def section(model: type[BaseModel], indent: str) -> None:
        for name, field in model.model_fields.items():
            nested = _nested_model(field.annotation)
            note = f"  # {field.description}" if field.description else ""
            if nested is not None and nested is not FewShotExample:
                lines.append(f"{indent}{name}:{note}")
                section(nested, indent + "  ")
                continue
            if field.is_required():
                value = "REQUIRED"
            else:
                default = field.get_default(call_default_factory=True)
                value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("\n...")
            lines.append(f"{indent}{name}: {value}{note}")

    for name, field in Recipe.model_fields.items():
        if name == "task":
            continue
        nested = _nested_model(field.annotation)
        note = f"  # {field.description}" if field.description else ""
        lines.append(f"{name}:{note}")
        section(nested, "  ")
    return "\n".join(lines) + "\n"
