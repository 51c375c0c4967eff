"""The recipe: one strict schema for everything a run needs, loaded from YAML.

Strictness is the point: every section forbids unknown keys (a misspelled key is an error that
suggests the closest valid key, never a silent fall-back to a default), numbers must be finite,
and all problems are reported at once as dotted paths.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from collections.abc import Hashable
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ftcli.errors import RecipeError, UserError

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
    train: str = Field(description="Training data: .jsonl .json .csv .tsv .parquet file, or a hub dataset id.")
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


def _metric_problems(raw: dict) -> list[str]:
    """Metric names depend on the task, so they are checked beside the schema (and always run,
    even when other fields fail, so that every problem is reported at once)."""
    task, section, train = raw.get("task"), raw.get("eval"), raw.get("train")
    if not isinstance(task, str) or task not in TASK_METRICS:
        return []
    allowed = TASK_METRICS[task]
    names = section.get("metrics") if isinstance(section, dict) else None
    problems = [f"eval.metrics: '{n}' is not a {task} metric{_suggest(str(n), allowed)} "
                f"(choose from {', '.join(allowed)})" for n in names or [] if n not in allowed] \
        if isinstance(names, list) else []
    best, choices = train.get("metric_for_best_model") if isinstance(train, dict) else None, BEST_MODEL_METRICS[task]
    if isinstance(best, str) and best not in choices:
        problems.append(f"train.metric_for_best_model: '{best}' cannot select a {task} model"
                        f"{_suggest(best, choices)} (choose from {', '.join(choices)})")
    return problems


def _type_name(annotation) -> str:
    members = getattr(annotation, "__args__", (annotation,))
    return " or ".join(getattr(m, "__name__", str(m)) for m in members if m is not type(None))


def _suggest(word: str, choices) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    close = close or [c for c in choices if len(word) >= 3 and c.startswith(word)][:1]
    return f" — did you mean {close[0]}?" if close else ""


_UNION_TAGS = {"str", "list[str]", "int", "float", "bool", "LoraSection", "list[FewShotExample]"}


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts a union member's type in the path (target_modules.list[str].0): drop it.
    return tuple(p for p in loc if p not in _UNION_TAGS)


def _nested_model(annotation) -> type[BaseModel] | None:
    """The schema class inside an annotation such as `LoraSection | None` or `list[FewShotExample]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _nested_model(arg)) is not None:
            return found
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class that owns the key at `loc` (None if the path leaves the schema)."""
    model: type[BaseModel] | None = Recipe
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections
            continue
        field = model.model_fields.get(part)
        model = _nested_model(field.annotation) if field else None
        if model is None:
            return None
    return model


def _format_problem(error: dict) -> str:
    loc = error["loc"]
    path = ".".join(str(p) for p in loc) or "(recipe)"
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        hint = _suggest(str(loc[-1]), owner.model_fields) if owner else ""
        return f"{path}: unknown key{hint}"
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "value_error":  # our validators name their keys themselves when the path is the recipe
        return f"{error['ctx']['error']}" if not loc else f"{path}: {error['ctx']['error']}"
    got = error.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}{shown}"


def parse_recipe(raw: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; raise RecipeError listing every problem."""
    if not isinstance(raw, dict):
        name = {"list": "a list", "str": "a string", "int": "a number", "float": "a number",
                "bool": "a boolean"}.get(type(raw).__name__, type(raw).__name__)
        kind = "empty" if raw is None else name
        raise RecipeError(source, [f"(recipe): the top level must be a mapping of keys, but it is {kind}"])
    problems = _metric_problems(raw)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": _clean_loc(e["loc"])} for e in exc.errors()]
        # A union reports each member's failure; keep only the most specific path of each.
        locs = [e["loc"] for e in errors]
        specific = [e for e in errors if not any(len(o) > len(e["loc"]) and o[:len(e["loc"])] == e["loc"]
                                                 for o in locs)]
        problems = [_format_problem(e) for e in specific] + problems
    if problems:
        raise RecipeError(source, problems)
    return recipe


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error (PyYAML keeps the last one,
    so a recipe with two `train:` sections would silently lose the first)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # anything else: PyYAML's own error
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    break  # PyYAML reports unhashable keys itself
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: YAML syntax error at {where}{problem}") from None
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply to be a recipe") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # PyYAML's tag constructors (`!!int x`, `!!timestamp y`) raise plain Python errors.
        raise UserError(f"{path}: YAML value does not fit its tag: {type(exc).__name__}: {exc}") from None


def _parse_value(text: str) -> Any:
    """A --set value as YAML (numbers, booleans, null, [lists], {maps}); anything else is a string,
    so `--set generate.system_prompt=Note: be brief` keeps its colon."""
    if not text.strip():
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `--set a.b.c=VALUE` overrides; VALUE is parsed as YAML and type-checked with the rest."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.learning_rate=1e-4")
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return raw


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or Path(value).suffix != "" or os.path.exists(value)


def _absolute(value: str | None, base: Path, always: bool = False) -> str | None:
    """Make a local path absolute (so a saved recipe works from any directory); leave hub ids alone."""
    if value is None or not (always or _looks_like_path(value) or (base / value).exists()):
        return value
    return str((base / Path(value).expanduser()).resolve())


def resolve_paths(recipe: Recipe, base: Path | None = None, source: str = "recipe") -> Recipe:
    base = base or Path.cwd()
    fields = [(recipe.model, "name_or_path", "model.name_or_path", False), (recipe.data, "train", "data.train", False),
              (recipe.data, "eval", "data.eval", False), (recipe.train, "output_dir", "train.output_dir", True)]
    problems = []
    for section, name, key, always in fields:
        value = getattr(section, name)
        try:
            setattr(section, name, _absolute(value, base, always))
        except (ValueError, RuntimeError, OSError) as exc:  # NUL bytes, ~nouser, names too long
            problems.append(f"{key}: not a usable path ({exc}): {value!r}")
    if problems:
        raise RecipeError(source, problems)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override, validate and resolve a recipe file. Relative paths resolve against the cwd."""
    raw = read_yaml(path)
    if overrides:
        if not isinstance(raw, dict):
            parse_recipe(raw, str(path))  # raises the top-level-shape error
        raw = apply_overrides(raw, overrides)
    return resolve_paths(parse_recipe(raw, str(path)), source=str(path))


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(dump_recipe(recipe), encoding="utf-8")


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
