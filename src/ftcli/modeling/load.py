"""Load models and tokenizers: a local directory, a Hub id, or a GGUF file.

Every failure to find or read a model becomes a ModelError that says where we looked and what to
do, instead of the long OSError transformers raises when it falls back to the (unreachable) Hub.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ftcli import runs
from ftcli.errors import ModelError, first_line
from ftcli.io import is_local_path, write_dir
from ftcli.modeling.from_config import new_model
from ftcli.modeling.quantization import load_quantized
from ftcli.recipe import ModelSection

TASK_MODEL_CLASSES = {"causal-lm": "AutoModelForCausalLM",
                      "sequence-classification": "AutoModelForSequenceClassification",
                      "seq2seq": "AutoModelForSeq2SeqLM", "masked-lm": "AutoModelForMaskedLM",
                      # A reward model is a classifier with one output: the reply's score (TRL's RewardTrainer).
                      "reward-model": "AutoModelForSequenceClassification"}


def check_model_source(name_or_path: str, gguf_file: str | None = None) -> str:
    """Say where a model would come from, without loading weights; raise ModelError if nowhere."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if gguf_file:
            if not (path / gguf_file).is_file():
                raise ModelError(f"GGUF file not found: {path / gguf_file}")
            return f"local GGUF file {path / gguf_file}"
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a model directory (no config.json)", hint=_not_a_model_hint(path))
        return f"local directory {path}"
    if is_local_path(name_or_path) or len(name_or_path.split("/")) > 2:
        raise ModelError(f"model not found: {name_or_path}", hint="run `make models` for the example "
                         "models, or point model.name_or_path at a local model directory")
    return _check_hub_model(name_or_path)


def _not_a_model_hint(path: Path) -> str:

    if runs.is_finished(path):  # a recipe's finished run resolves to its model/ as the recipe loads
        return f"{path} is a finished ftcli run: its model is {path / runs.MODEL_DIR}"
    if runs.looks_like_run(path):
        return (f"{path} is an ftcli run that has not finished (no {runs.MODEL_DIR}/ and {runs.TRAIN_RESULTS} "
                "yet): run its `ftcli finetune` command again to resume it, then name the run here")
    return "point model.name_or_path at a saved Hugging Face model or a finished ftcli run, " \
           "or set model.gguf_file for a .gguf file inside it"


def _check_hub_model(repo_id: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return f"hub model {repo_id} (cached)"
    try:
        from huggingface_hub import model_info

        model_info(repo_id, timeout=10)
    except Exception as exc:
        raise hub_model_error(repo_id, exc) from None
    return f"hub model {repo_id}"


def hub_model_error(name: str, exc: Exception) -> ModelError:
    first = first_line(exc)
    return ModelError(f"model '{name}' is not a local directory and could not be loaded from the "
                      f"Hugging Face Hub ({first})",
                      hint="use a local path (run `make models` for the examples), or connect to the Hub")


def _load(loader, name_or_path: str, **kwargs):
    """Call a from_pretrained-style loader, turning 'cannot find/read it' into ModelError."""
    try:
        return loader(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        if not Path(name_or_path).expanduser().exists():
            raise hub_model_error(name_or_path, exc) from None
        raise ModelError(f"cannot load model from {name_or_path}: {first_line(exc)}") from None


def _source_kwargs(source) -> dict:
    """from_pretrained options that follow from a recipe's `model:` section."""
    kwargs: dict = {"trust_remote_code": source.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    elif not source.allow_pickle_weights:
        kwargs["use_safetensors"] = True
    return kwargs


def _refuse_pickle(source) -> None:
    folder = Path(source.name_or_path).expanduser()
    if source.gguf_file or source.allow_pickle_weights or not folder.is_dir():
        return
    if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
        raise ModelError(f"{folder} has only pickle (.bin) weights, which can run code when loaded",
                         hint="convert them to safetensors, or set model.allow_pickle_weights: true "
                              "if you trust their source")


def load_tokenizer(source, log=None):
    """The tokenizer of a recipe's model (a ModelSection), with a pad token guaranteed."""
    from transformers import AutoTokenizer

    kwargs = {k: v for k, v in _source_kwargs(source).items() if k != "use_safetensors"}
    tokenizer = _load(AutoTokenizer.from_pretrained, source.name_or_path, **kwargs)
    if tokenizer.pad_token_id is None:
        # Padding is masked out of attention and loss, so any existing token will do; EOS is the
        # usual choice and avoids resizing the embeddings.
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer of {source.name_or_path} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
        if log:
            log(f"the tokenizer has no pad token; padding with its EOS token {tokenizer.eos_token!r}")
    return tokenizer


def load_model(task: str, source, label2id: dict | None = None, pad_token_id: int | None = None,
               tokenizer=None, seed: int | None = None, precision=None):
    """The model of a recipe's `model:` section (a ModelSection) with the task's head. A
    `from_config` source is a new model, sized to `tokenizer` and initialised from `seed`. `precision`
    (training's `modeling.precision.Precision`) sets the weights' dtype and the attention kernel; without
    it, transformers' defaults (the checkpoint's dtype)."""
    import transformers

    cls = getattr(transformers, TASK_MODEL_CLASSES[task])
    precision_kwargs = precision.load_kwargs() if precision is not None else {}
    if source.from_config is not None:
        if tokenizer is None or seed is None:
            raise ValueError("a model built from its config needs the run's tokenizer and seed")
        return new_model(cls, source.from_config, tokenizer, seed, label2id, **precision_kwargs)
    _refuse_pickle(source)
    kwargs = {**_source_kwargs(source), **precision_kwargs}
    if task == "sequence-classification" and label2id is not None:
        kwargs.update(num_labels=len(label2id), label2id=label2id,
                      id2label={i: label for label, i in label2id.items()})
        # A base model's head may have another label count (or none): start it fresh.
        kwargs["ignore_mismatched_sizes"] = True
    if task == "reward-model":
        kwargs.update(num_labels=1, ignore_mismatched_sizes=True)
    if source.quantization is not None:  # QLoRA's base: bitsandbytes layers (modeling.quantization)
        model = load_quantized(partial(_load, cls.from_pretrained, source.name_or_path), kwargs,
                               source.quantization, precision)
    else:
        model = _load(cls.from_pretrained, source.name_or_path, **kwargs)
    if source.gguf_file:
        model = _plain_copy(model)
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id  # classification pools the last non-pad token
    return model


def local_model(path) -> "ModelSection":
    """A ModelSection for a model directory ftcli wrote itself (a run's model/)."""
    return ModelSection(name_or_path=str(path))


def _plain_copy(loaded):
    """The same weights in a fresh model whose config no longer says 'GGUF-quantized'. transformers
    de-quantizes GGUF to float on load but keeps the flag, and then refuses to train or save it."""
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)._from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model


def import_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF file into a safetensors Hugging Face model directory (loads in well under a
    second afterwards, against ~20-30 s of de-quantizing the GGUF on every load)."""
    gguf_path, out_dir = Path(gguf_path).resolve(), Path(out_dir)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file not found: {gguf_path}")
    source = ModelSection(name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer = load_tokenizer(source)
    model = load_model("causal-lm", source)

    def save(path: Path) -> None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    write_dir(save, out_dir)
    return out_dir
