"""`model.from_config` checked when the recipe is read: a transformers model type that has a model for
the task, and config fields its config class knows (did-you-mean for the rest), built once to run
transformers' own checks. Building the model itself is `ftcli.modeling.from_config`.

transformers is imported only inside functions (and only for recipes that use from_config), so
`ftcli --help` and recipes of pretrained models stay fast.
"""

from __future__ import annotations

import re

from ftcli.errors import suggest

# Set by ftcli from the run's tokenizer: a value in the recipe could only disagree with it (a
# vocab_size below len(tokenizer) crashes on the first unknown id, above it wastes an embedding).
TOKENIZER_FIELDS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",
                    "cls_token_id", "sep_token_id", "mask_token_id")


# Written by transformers (version, class names) or by ftcli from the data (classification labels).
MANAGED_FIELDS = ("transformers_version", "architectures", "id2label", "label2id", "num_labels")


# Read by every model although not every config class declares them as fields.
COMMON_FIELDS = ("tie_word_embeddings", "output_attentions")


TASK_MAPPINGS = {"causal-lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
                 "masked-lm": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
                 "seq2seq": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
                 "sequence-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
                 "reward-model": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"}


TASK_EXAMPLES = {"causal-lm": "llama, gpt2, qwen2", "masked-lm": "bert, roberta, distilbert",
                 "seq2seq": "t5, bart", "sequence-classification": "bert, roberta, llama",
                 "reward-model": "llama, qwen2"}


def task_architectures(task: str) -> dict[str, str]:
    """Model type -> model class name for a task (what transformers' Auto class for it accepts)."""
    from transformers.models.auto import modeling_auto

    return getattr(modeling_auto, TASK_MAPPINGS[task])


def is_encoder(architecture: str) -> bool:
    """A bidirectional encoder (bert, roberta, ...): has a masked-LM head, and is not a seq2seq model."""
    return (architecture in task_architectures("masked-lm")
            and architecture not in task_architectures("seq2seq"))


def config_fields(config_class) -> set[str]:
    """The keys a recipe may give for a config class: its dataclass fields, its aliases (gpt2 takes
    hidden_size for n_embd) and the common ones, less those transformers or ftcli set."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)} if dataclasses.is_dataclass(config_class) \
        else set(config_class().to_dict())
    return (names | set(config_class.attribute_map) | set(COMMON_FIELDS)) - set(MANAGED_FIELDS)


def from_config_problems(raw: dict) -> list[str]:
    """Problems with `model.from_config` as "dotted.path: message" lines (checked beside the schema,
    so they are reported together with every other problem of the recipe)."""
    model = raw.get("model")
    fields = model.get("from_config") if isinstance(model, dict) else None
    if not isinstance(fields, dict):
        return []  # absent, or the schema reports its type
    where = "model.from_config"
    architecture = fields.get("architecture")
    if architecture is None:
        return [f"{where}.architecture: required key is missing (a transformers model type such as llama, "
                "gpt2, bert or t5)"]
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

    if not isinstance(architecture, str) or architecture not in CONFIG_MAPPING_NAMES:
        hint = suggest(str(architecture).lower(), CONFIG_MAPPING_NAMES)
        return [f"{where}.architecture: {architecture!r} is not a transformers model type{hint}"]
    config_class = CONFIG_MAPPING[architecture]
    allowed = config_fields(config_class)
    problems = []
    for key in fields:
        if key == "architecture":
            continue
        if key == "vocab_size":
            problems.append(f"{where}.{key}: set by ftcli to the tokenizer's size; remove it "
                            "(tokenizer.train.vocab_size sizes a trained vocabulary)")
        elif key in TOKENIZER_FIELDS:
            problems.append(f"{where}.{key}: set by ftcli from the tokenizer's special tokens; remove it")
        elif key not in allowed:
            problems.append(f"{where}.{key}: unknown key for {config_class.__name__}{suggest(str(key), allowed)}")
    problems += _task_problems(raw.get("task"), architecture, fields)
    return problems or _construction_problems(config_class, fields)


def _task_problems(task, architecture: str, fields: dict) -> list[str]:
    if not isinstance(task, str) or task not in TASK_MAPPINGS:
        return []  # the schema reports an unknown task
    where = "model.from_config.architecture"
    if architecture not in task_architectures(task):
        return [f"{where}: {architecture} has no {task} model in transformers "
                f"(use one that does, e.g. {TASK_EXAMPLES[task]})"]
    # transformers lists bert & co. as causal LMs too, but only with is_decoder: true does such a
    # model stop seeing the tokens it is asked to predict.
    if task == "causal-lm" and is_encoder(architecture) and not fields.get("is_decoder"):
        return [f"{where}: {architecture} is an encoder (every token sees the whole text), not a causal LM; "
                f"use a decoder such as {TASK_EXAMPLES['causal-lm']} (or set is_decoder: true)"]
    # bart & co. are listed as masked LMs too, but they denoise through a decoder, which our
    # masking (labels only at the hidden positions) does not feed.
    if task == "masked-lm" and not is_encoder(architecture):
        return [f"{where}: {architecture} is an encoder-decoder; masked-lm trains an encoder such as "
                f"{TASK_EXAMPLES['masked-lm']}"]
    return []


def _construction_problems(config_class, fields: dict) -> list[str]:
    """Build the config once to run transformers' own checks (types, hidden size vs heads)."""
    try:
        config_class(**{k: v for k, v in fields.items() if k != "architecture"})
    except Exception as exc:  # strict dataclass errors, and plain ValueErrors of older configs
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        field = re.search(r"for field '(\w+)'", lines[0]) if lines else None
        path = "model.from_config" + (f".{field.group(1)}" if field else "")
        message = re.sub(r"^\w+(Error|Exception): ", "", lines[-1]) if lines else type(exc).__name__
        return [f"{path}: {message}"]
    return []
