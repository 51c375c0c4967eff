"""The recipe's `train:` and `distributed:` sections: TrainingArguments by their short names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ftcli.errors import suggest
from ftcli.recipe.section import Section

# Tokens per forward/backward pass. SmolLM2-135M + LoRA in fp32 keeps ~3 MB per token for backward:
# on the sft benchmark (bench/levers.py) passes of 512 tokens peak at 2.7 GB and 162 tokens/s, of
# 1,024 at 4.3 GB and 174 tokens/s, whole batches at 7.3 GB and 177 tokens/s.
MICRO_BATCH_TOKENS = 512


def optimizer_names() -> list[str]:
    """The optimizer names the installed transformers accepts (imported only for a recipe that names one)."""
    from transformers.training_args import OptimizerNames

    return [name.value for name in OptimizerNames]


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
    gradient_checkpointing: bool = Field(False, description="Recompute each layer's activations in backward "
                                                            "instead of keeping them (less memory, ~30% slower); "
                                                            "works with lora: and quantized models.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto | fp32 | bf16 | fp16: mixed precision (autocast) for training. auto: bf16 on a GPU "
                            "that supports it, else fp16 on CUDA, fp32 on CPU. bf16 also runs on CPU; fp16 needs a GPU.")
    optim: str | None = Field(None, description="A TrainingArguments optimizer name (adamw_torch, adamw_torch_fused, "
                                                "adafactor, sgd, adamw_8bit, paged_adamw_8bit, ...); the 8-bit and "
                                                "paged ones need bitsandbytes. null: Trainer's default "
                                                "(adamw_torch_fused on torch >= 2.8).")
    liger_kernel: bool = Field(False, description="Liger's fused Triton kernels (RMSNorm, SwiGLU, RoPE, and the "
                                                  "linear-cross-entropy loss that never holds the logits): needs a "
                                                  "CUDA GPU and the liger-kernel package; trains on the model's "
                                                  "own (fused) loss.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding, "
                                                    "shuffled batch order); false → plain random order.")
    micro_batch_tokens: int | Literal["auto"] | None = Field("auto", description=(
        "causal-lm: run each batch in forward/backward passes of at most this many tokens (same gradients, "
        f"bounded activation memory); auto → {MICRO_BATCH_TOKENS} where passes work (not under DeepSpeed, "
        "only for causal-lm), else whole batches; null → the whole batch at once."))
    dataloader_num_workers: int = Field(0, ge=0, description="Worker processes preparing batches (0 → in "
                                                             "the training process).")
    torch_compile: bool = Field(False, description="Compile the model with torch.compile (slow to start; "
                                                   "measure before relying on it).")
    on_nonfinite_loss: Literal["stop", "skip"] = Field("stop", description="On a NaN/inf loss: stop (exit 3, "
                                                       "keeping the last good checkpoint) or skip the "
                                                       "optimizer step (weights, optimizer state and learning "
                                                       "rate unchanged).")
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "none"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment tracking: tensorboard (<output_dir>/logs), mlflow ($MLFLOW_TRACKING_URI, "
                    "else ./mlflow.db), wandb, or none. Nothing is sent anywhere unless you configure it.")

    @field_validator("micro_batch_tokens", mode="before")
    @classmethod
    def _tokens_auto_or_null(cls, value):
        if value is None or value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"expected a positive number of tokens, auto or null (got {value!r})")
        return value

    @field_validator("optim")
    @classmethod
    def _known_optimizer(cls, value: str | None) -> str | None:
        if value is None:
            return value
        names = optimizer_names()
        if value not in names:
            raise ValueError(f"unknown optimizer '{value}'{suggest(value, names)} (the installed transformers has "
                             f"{', '.join(names)})")
        return value

    @field_validator("report_to")
    @classmethod
    def _report_to_alone_or_once(cls, value: list[str]) -> list[str]:
        if "none" in value and len(value) > 1:
            raise ValueError("'none' cannot be combined with other trackers")
        if twice := sorted({name for name in value if value.count(name) > 1}):
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return value


def unworkable_train_settings(train: TrainSection, task: str, deepspeed: bool) -> list[str]:
    """Train settings this task or engine cannot honour, which would otherwise be silently ignored."""
    problems = []
    if isinstance(train.micro_batch_tokens, int):
        # Passes add up to the batch only for a loss summed over tokens (ftcli's causal-LM loss), and
        # DeepSpeed steps its optimizer inside every backward pass.
        if task != "causal-lm":
            problems.append(f"train.micro_batch_tokens is for causal-lm; task {task} runs each batch whole "
                            "(set it to auto or null)")
        elif deepspeed:
            problems.append("train.micro_batch_tokens cannot work under distributed.deepspeed, which steps the "
                            "optimizer inside every backward pass (set it to auto or null)")
    if isinstance(train.micro_batch_tokens, int) and train.liger_kernel:
        problems.append("train.micro_batch_tokens cannot work with train.liger_kernel: the fused loss is the model's "
                        "own mean over each pass, so passes would not add up to the batch (set it to auto or null)")
    if train.on_nonfinite_loss == "skip" and deepspeed:
        problems.append("train.on_nonfinite_loss: skip cannot skip an optimizer step under "
                        "distributed.deepspeed, which steps inside backward (use stop)")
    return problems


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
