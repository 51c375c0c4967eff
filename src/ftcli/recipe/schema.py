"""The recipe schema: one strict pydantic model of everything a run needs, with its defaults.

Strictness is the point: every section forbids unknown keys (a misspelled key is an error that
suggests the closest valid key, never a silent fall-back to a default), numbers must be finite,
and booleans are never read as numbers. `ftcli.recipe.reference` renders it as commented YAML;
`ftcli.recipe.loading` reads, validates and reports recipes. The `data:` and `train:` sections live
in modules of their own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ftcli.recipe.data_section import TEMPLATE_NAMES, DataInput, DataSection, DataSource
from ftcli.recipe.preference_section import (PREFERENCE_METRICS, PreferenceSection, preference_problems,
                                             reward_model_problems)
from ftcli.recipe.quantization_section import QuantizationSection, quantization_problems
from ftcli.recipe.section import Section, _nested_model
from ftcli.recipe.sweep_section import SweepSection, sweep_problems
from ftcli.recipe.train_section import DistributedSection, TrainSection, unworkable_train_settings

__all__ = ["TASKS", "Task", "GENERATION_METRICS", "TASK_METRICS", "BEST_MODEL_METRICS", "DEFAULT_METRICS",
           "TEMPLATE_NAMES", "Section", "ModelSection", "TokenizerSection", "TokenizerTraining", "DataInput",
           "DataSource", "DataSection", "LoraSection", "TrainSection", "DistributedSection", "EvalSection",
           "FewShotExample", "GenerateSection", "Recipe", "_nested_model"]


TASKS = ("causal-lm", "sequence-classification", "seq2seq", "masked-lm", "reward-model")


Task = Literal["causal-lm", "sequence-classification", "seq2seq", "masked-lm", "reward-model"]


# Metrics each task can report, and the ones it reports when the recipe names none.
# Scored on generated responses (causal-lm SFT), so `ftcli eval` generates when one is asked for.
GENERATION_METRICS = ("exact_match", "rouge", "bleu", "chrf")


TASK_METRICS = {
    # loss: the mean cross-entropy of the eval rows' labels (what training minimised; a sweep can rank by it).
    "sequence-classification": ("accuracy", "f1", "precision", "recall", "matthews_correlation", "loss"),
    "causal-lm": ("perplexity", "loss") + GENERATION_METRICS,
    "seq2seq": ("loss", "perplexity") + GENERATION_METRICS,
    "masked-lm": ("perplexity", "loss"),
    # A reward model scores held-out pairs: how often, and by how much, chosen scores above rejected.
    "reward-model": ("pairwise_accuracy", "reward_margin"),
}


# What training can select the best checkpoint by (generation is too slow to run at every eval).
BEST_MODEL_METRICS = {
    "sequence-classification": TASK_METRICS["sequence-classification"],
    "causal-lm": ("loss", "perplexity"),
    "seq2seq": ("loss", "perplexity"),
    "masked-lm": ("loss", "perplexity"),
    "reward-model": ("loss", "accuracy"),  # TRL's RewardTrainer logs eval_accuracy: the pairwise accuracy
}


DEFAULT_METRICS = {
    "sequence-classification": ["accuracy", "f1"],
    "causal-lm": ["perplexity", "loss"],
    "seq2seq": ["loss", "bleu", "chrf"],
    "masked-lm": ["perplexity", "loss"],
    "reward-model": ["pairwise_accuracy", "reward_margin"],
}


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
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto | float32 | bfloat16 | float16: the dtype the weights are loaded (and kept) in. "
                            "auto: bfloat16 under lora: on a GPU that supports it (the frozen base; adapters stay "
                            "float32), else float32: a full fine-tune keeps float32 master weights under "
                            "train.precision bf16/fp16, whose updates would round away in bfloat16 (set bfloat16 "
                            "for pure-bf16 training). float16 weights only with lora:.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="auto | sdpa | eager | flash_attention_2: the attention kernel. auto: transformers' "
                            "choice (sdpa where the model has it). flash_attention_2 needs a CUDA GPU, the flash-attn "
                            "package and float16/bfloat16 weights; data.packing then runs its variable-length path.")
    quantization: QuantizationSection | None = Field(
        None, description="QLoRA: the base's linear layers held in 4 or 8 bits by bitsandbytes (pip install "
                          "'ftcli[quant]') under a lora: adapter; model/ is the adapter merged into the full-precision base.")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.name_or_path is None) == (self.from_config is None):
            raise ValueError("set one of name_or_path (a model to fine-tune) or from_config (a new model "
                             "to train from scratch)")
        if self.from_config is not None and self.gguf_file:
            raise ValueError("gguf_file loads pretrained weights; it cannot be combined with from_config")
        return self


def unworkable_precision(model: ModelSection, lora: LoraSection | None) -> list[str]:
    """Weight dtypes that cannot train as asked, whatever the hardware (the device checks are
    `ftcli.modeling.precision`)."""
    problems = []
    if model.dtype == "float16":
        # fp16 mixed precision scales the loss and refuses float16 gradients (GradScaler); without the
        # scaler, small updates round to zero in float16. LoRA keeps its adapters in float32.
        trained = "the whole model" if lora is None else "lora.modules_to_save" if lora.modules_to_save else None
        if trained:
            problems.append(f"model.dtype: float16 cannot train {trained} in float16 (fp16 mixed precision refuses "
                            "float16 gradients, and without it small updates round to zero): use model.dtype "
                            "bfloat16 or float32 (train.precision: fp16 still computes in float16)"
                            + (", or train a lora: adapter" if lora is None else ""))
    return problems


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


class LoraSection(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r; alpha / sqrt(r) "
                                               "with use_rslora).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = Field("all-linear", description="'all-linear' or module names.")
    use_dora: bool = Field(False, description="DoRA: learn each weight's magnitude apart from its direction "
                                              "(closer to full fine-tuning at low r; slower steps).")
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA: scale = alpha / sqrt(r), so a higher r "
                                                "keeps learning instead of being damped.")
    modules_to_save: list[str] | None = Field(
        None, min_length=1, description="Modules trained in full beside the adapters and saved with them "
                                        "(names as in the model, e.g. [embed_tokens, lm_head] for new tokens).")


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
    tools: list[dict] | str | None = Field(
        None, description="Chat models: tool (function) schemas handed to the chat template with each prompt, "
                          "as training handed a row's tools: a list, or the path of a .json file of them.")


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
    preference: PreferenceSection | None = Field(None, description="Present → preference tuning (DPO, IPO, KTO, ORPO, SimPO) "
                                                                   "on chosen/rejected pairs (KTO: or replies labelled good or bad); absent → SFT.")
    sweep: SweepSection | None = Field(None, description="`ftcli sweep`: a hyper-parameter search over this recipe "
                                                         "(validate checks it; finetune trains the recipe as written).")

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
    def _streaming_fits_training(self) -> "Recipe":
        if not self.data.streaming:
            return self
        problems = []
        if self.train.max_steps is None:
            problems.append("data.streaming reads the data lazily, so its length is unknown: set train.max_steps")
        if self.train.dataloader_num_workers:
            # Every worker would read the whole stream (each row trained once per worker), and the
            # counts train_results reports (samples, truncated, cleaning) would stay in the workers.
            problems.append("data.streaming reads and tokenizes in the training process: with "
                            f"train.dataloader_num_workers: {self.train.dataloader_num_workers} every worker "
                            "would train on the whole stream; set train.dataloader_num_workers: 0 (or "
                            "data.streaming: false)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _packing_is_for_causal_lm(self) -> "Recipe":
        if self.data.packing and self.task != "causal-lm":
            raise ValueError(f"data.packing is for causal-lm; task {self.task} pads its batches")
        return self

    @model_validator(mode="after")
    def _train_settings_that_work(self) -> "Recipe":
        deepspeed = self.distributed is not None and self.distributed.deepspeed is not None
        if problems := unworkable_train_settings(self.train, self.task, deepspeed):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _weights_that_train(self) -> "Recipe":
        if problems := unworkable_precision(self.model, self.lora):
            raise ValueError("; ".join(problems))
        return self

    @property
    def tunes_on_pairs(self) -> bool:
        """Preference tuning and reward models: the data is pairs of a chosen and a rejected reply."""
        return self.preference is not None or self.task == "reward-model"

    @model_validator(mode="after")
    def _preference_fits(self) -> "Recipe":
        if problems := preference_problems(self) + reward_model_problems(self):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _quantization_fits(self) -> "Recipe":
        if problems := quantization_problems(self):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _sweep_fits(self) -> "Recipe":
        metrics = PREFERENCE_METRICS if self.preference else TASK_METRICS[self.task]
        if problems := sweep_problems(self, metrics):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _default_metrics(self) -> "Recipe":
        if self.eval.metrics is None:
            self.eval.metrics = list(PREFERENCE_METRICS if self.preference else DEFAULT_METRICS[self.task])
        return self
