"""A run's peak memory, estimated as `finetune` would train it: the model built on the meta device from its
config alone (`meta_model`), its largest pass taken from the data as the trainer cuts it, and the parts
counted by `memory_estimate` and `activations`. Used by `ftcli plan` and logged by `finetune` beside the
peak it measures."""

from __future__ import annotations

from dataclasses import dataclass

from ftcli.data.collators import data_collator
from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.errors import first_line
from ftcli.modeling.lora import attach_lora
from ftcli.modeling.precision import Precision
from ftcli.recipe import Recipe
from ftcli.recipe.train_section import MICRO_BATCH_TOKENS
from ftcli.training import architectures, distributed, memory_estimate
from ftcli.training.activations import measure
from ftcli.training.memory_estimate import MemoryEstimate, human_bytes
from ftcli.training.meta_model import checkpoint_bytes, meta_model
from ftcli.training.micro_batches import split_passes
from ftcli.training.preflight import PreparedData


@dataclass
class PassShape:
    """The largest forward/backward pass of the run: the batch of its longest examples, cut into
    token-bounded passes as FtcliTrainer cuts it."""

    rows: int
    width: int
    target_width: int | None  # seq2seq: the decoder's
    label_positions: int  # positions the loss reads
    passes: int  # passes that batch takes


def _pass_budget(recipe: Recipe, levers: dict) -> int | None:
    """Tokens per pass, as FtcliTrainer._pass_budget decides it (DeepSpeed runs whole batches)."""
    setting = levers["micro_batch_tokens"]
    deepspeed = recipe.distributed is not None and recipe.distributed.deepspeed is not None
    if setting == "auto":
        return MICRO_BATCH_TOKENS if levers["causal_lm"] and not deepspeed else None
    return setting if levers["causal_lm"] else None


def _longest_batch(recipe: Recipe, data: PreparedData) -> list[dict]:
    """The batch of the longest training examples (the one length grouping makes); a stream's length is
    unknown, so full-length rows stand in for it."""
    n = recipe.train.batch_size
    if recipe.data.streaming:
        row = {"input_ids": [0] * recipe.data.max_length, "labels": [0] * recipe.data.max_length}
        return [row] * n
    examples = data.train_set.examples
    if recipe.tunes_on_pairs:  # a batch of pairs: both replies after the prompt, in one forward
        sides = ("completion_ids",) if examples and "completion_ids" in examples[0] else ("chosen_ids", "rejected_ids")
        n, examples = len(sides) * n, [{"input_ids": e["prompt_ids"] + e[side],
                                        "labels": [IGNORE_INDEX] * len(e["prompt_ids"]) + e[side]}
                                       for e in examples for side in sides]

    def size(e):
        return len(e["input_ids"]) + (len(e["labels"]) if recipe.task == "seq2seq" else 0)
    return sorted(examples, key=size, reverse=True)[:n]


def pass_shape(recipe: Recipe, data: PreparedData, budget: int | None, own_loss: bool) -> PassShape:
    """The run's largest pass, from the real collator and the real cut into passes."""
    batch = data_collator(recipe, data.tokenizer)(_longest_batch(recipe, data))
    passes = split_passes(batch, budget) if budget else [batch]
    worst = max(passes, key=lambda p: p["input_ids"].numel())
    rows, width = worst["input_ids"].shape
    labels = worst.get("labels")
    target = labels.shape[1] if recipe.task == "seq2seq" else None
    if recipe.task == "causal-lm" and not own_loss:
        positions = int((labels[:, 1:] != IGNORE_INDEX).sum())  # ftcli's loss: the head on targets only
    elif recipe.task in ("sequence-classification", "reward-model"):
        positions = rows
    else:
        positions = rows * (target or width)
    return PassShape(rows, width, target, positions, len(passes))


def _meta_inputs(recipe: Recipe, model, shape: PassShape) -> dict:
    import inspect

    import torch

    def ids(width):
        return torch.zeros(shape.rows, width, dtype=torch.long, device="meta")

    inputs = {"input_ids": ids(shape.width)}
    if shape.target_width is not None:
        inputs["decoder_input_ids"] = ids(shape.target_width)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if recipe.task == "causal-lm" and "logits_to_keep" in inspect.signature(base.forward).parameters:
        inputs["logits_to_keep"] = 1  # the logits are counted apart (`memory_estimate.logits_bytes`)
    return inputs


def estimate(recipe: Recipe, data: PreparedData, precision: Precision, baseline: int = 0) -> tuple:
    """(MemoryEstimate, parameter counts, PassShape) of the run as `finetune` would train it.
    `baseline`: the process's resident memory before the model (counted on a CPU only)."""
    import torch

    base = meta_model(recipe, data.tokenizer, data.label2id, precision.load_kwargs())
    quantized = memory_estimate.quantized_weights(base) if recipe.model.quantization is not None else set()
    base_params = sum(p.numel() for p in base.parameters())
    model = base
    if recipe.lora is not None:
        with torch.device("meta"):
            model = attach_lora(base, recipe.task, recipe.lora)
    trainable, total = memory_estimate.parameter_counts(model)
    memory = _parameter_parts(recipe, model, quantized, base_params, precision)
    shape = _pass_parts(recipe, data, model, precision, memory)
    if precision.device == "cpu":
        memory.baseline = baseline
        # bitsandbytes on a CPU dequantizes each quantized weight for every matmul: the heap keeps about
        # one float copy of them all (SmolLM2-135M, 4-bit: 2.36 GB peak RSS; 2.64 GB estimated, 2.23 without it).
        dequantized = sum(p.numel() for p in model.parameters() if id(p) in quantized) * _size(memory.dtype)
        memory.heap = memory_estimate.heap_bytes(memory.activations_plain, memory.gradients + memory.optimizer)
        memory.heap += dequantized
    else:
        memory.load = 0  # host memory: not the GPU's
    return memory, {"total": total, "trainable": trainable}, shape


def _size(dtype) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def _parameter_parts(recipe: Recipe, model, quantized: set[int], base_params: int, precision) -> MemoryEstimate:
    """The estimate's weights, trainable parameters, gradients and optimizer states (passes: 0)."""
    kinds, trainable = memory_estimate.split_parameters(model, quantized, recipe.model.quantization)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, known = memory_estimate.optimizer_state_bytes(params, recipe.train.optim)
    load = _checkpoint_pages(recipe, base_params, kinds, precision)
    memory = MemoryEstimate(device=precision.device, weights=sum(kinds.values()), weights_by_kind=kinds,
                            trainable=trainable, gradients=sum(p.numel() * p.element_size() for p in params),
                            optimizer=optimizer, activations=0, activations_checkpointed=0, activations_plain=0,
                            logits=0, checkpointing=recipe.train.gradient_checkpointing, load=load)
    if not known:
        memory.notes.append(f"train.optim {recipe.train.optim}: states assumed AdamW-sized")
    return memory


def _pass_parts(recipe: Recipe, data: PreparedData, model, precision, memory: MemoryEstimate) -> PassShape:
    """Fill in the activations and logits of the run's largest pass (measured on the meta model, in the
    dtype the pass computes in); returns that pass's shape."""
    t = recipe.train
    own_lm_loss = recipe.task == "causal-lm" and recipe.preference is None  # DPO scores pairs its own way
    levers = architectures.loss_levers(model, own_lm_loss, t.micro_batch_tokens, lambda _: None, liger=t.liger_kernel)
    shape = pass_shape(recipe, data, _pass_budget(recipe, levers), own_loss=not levers["causal_lm"])
    memory.dtype = _activation_dtype(precision, recipe.model.quantization is not None)
    if memory.dtype != model.dtype:
        model.to(memory.dtype)  # on the meta device: only the dtype changes
    kept = measure(model, _meta_inputs(recipe, model, shape), precision.device)
    memory.activations_plain, memory.activations_checkpointed = kept.total, kept.checkpointed()
    memory.activations = kept.checkpointed() if t.gradient_checkpointing else kept.total
    if not t.liger_kernel:  # Liger's fused loss never holds the logits
        memory.logits = memory_estimate.logits_bytes(shape.label_positions, _outputs(model, recipe),
                                                     _size(memory.dtype))
    return shape


def _activation_dtype(precision: Precision, quantized: bool):
    """The dtype activations are kept in: autocast's half dtype, else the weights' (peft's k-bit
    preparation leaves a quantized model's hidden states in float32)."""
    import torch

    if precision.mixed in ("bf16", "fp16"):
        return torch.bfloat16 if precision.mixed == "bf16" else torch.float16
    return torch.float32 if quantized else getattr(torch, precision.dtype)


def _outputs(model, recipe: Recipe) -> int:
    config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    if recipe.task in ("sequence-classification", "reward-model"):
        return config.num_labels
    return config.get_text_config().vocab_size


def _checkpoint_pages(recipe: Recipe, base_params: int, kinds: dict, precision: Precision) -> int:
    """What is resident while loading on a CPU: a checkpoint read into another dtype, or quantized, is read
    whole through mmap beside the weights it becomes (a quantized model's unquantized weights are then
    copied off the file, `quantization._off_the_checkpoint`, so the mapping goes once loading is done)."""
    source, weights = recipe.model, sum(kinds.values())
    if source.from_config is not None:
        return weights
    saved = checkpoint_bytes(source, base_params)
    per_param = saved / base_params  # a file's size is its weights' within a header's few kilobytes
    converted = abs(per_param / _itemsize(precision.dtype) - 1) > 0.1
    return weights + saved if source.quantization is not None or converted else weights


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]


def planned_peak(recipe: Recipe, data: PreparedData, precision: Precision, log) -> int | None:
    """`finetune`'s estimate of its own peak, made before the model loads (the process then is the
    CPU baseline); None, said in the log, for sharded runs (FSDP, DeepSpeed split the parts across
    processes) and where estimating fails: it is advice, and never stops a run."""
    if not distributed.is_main() or distributed.shards_the_model(recipe.distributed):
        return None
    try:
        memory = estimate(recipe, data, precision, memory_estimate.current_rss())[0]
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log(f"memory plan unavailable ({type(exc).__name__}: {first_line(exc)})")
        return None
    log(f"memory plan: peak {human_bytes(memory.total)} (`ftcli plan` shows the parts)")
    return memory.total


def peak_record(planned: int | None, device: str, log) -> dict:
    """train_results.json's measured peak (`memory_estimate.peak_memory_bytes`) beside the plan's, and
    the log line that compares them."""
    peak = memory_estimate.peak_memory_bytes(device)
    versus = f" (plan {human_bytes(planned)}, {100 * (peak / planned - 1):+.0f}%)" if planned else ""
    what = "CUDA max allocated" if device == "cuda" else "peak RSS"
    log(f"peak memory {human_bytes(peak)} ({what}){versus}")
    return {"peak_memory_bytes": peak, "planned_memory_bytes": planned}
