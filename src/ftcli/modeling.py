"""Load models and tokenizers (local dir, hub id, or GGUF file), attach LoRA, merge and save.

Every failure to find or read a model becomes a ModelError that says where we looked and what to
do, instead of the long OSError transformers raises when it falls back to the (unreachable) Hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ftcli.errors import ModelError

if TYPE_CHECKING:
    from ftcli.recipe import ModelSection

TASK_MODEL_CLASSES = {"causal-lm": "AutoModelForCausalLM",
                      "sequence-classification": "AutoModelForSequenceClassification",
                      "seq2seq": "AutoModelForSeq2SeqLM", "masked-lm": "AutoModelForMaskedLM"}
# peft has no masked-LM task type; None gives its generic model, which LoRA-wraps the encoder alike.
PEFT_TASK_TYPES = {"causal-lm": "CAUSAL_LM", "sequence-classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM",
                   "masked-lm": None}


def is_local(name_or_path: str) -> bool:
    """A local path rather than a hub id: it exists, is written as a path, or its first folder
    exists here (`models/tiny-lama` with a `models/` folder is a typo, not a hub repo)."""
    path = Path(name_or_path).expanduser()
    return (path.exists() or name_or_path.startswith((".", "/", "~"))
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


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
    if is_local(name_or_path) or len(name_or_path.split("/")) > 2:
        raise ModelError(f"model not found: {name_or_path}", hint="run `make models` for the example "
                         "models, or point model.name_or_path at a local model directory")
    return _check_hub_model(name_or_path)


def _not_a_model_hint(path: Path) -> str:
    from ftcli import runs

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
        raise _hub_error(repo_id, exc) from None
    return f"hub model {repo_id}"


def _hub_error(name: str, exc: Exception) -> ModelError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelError(f"model '{name}' is not a local directory and could not be loaded from the "
                      f"Hugging Face Hub ({first})",
                      hint="use a local path (run `make models` for the examples), or connect to the Hub")


def _load(loader, name_or_path: str, **kwargs):
    """Call a from_pretrained-style loader, turning 'cannot find/read it' into ModelError."""
    try:
        return loader(name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        if not Path(name_or_path).expanduser().exists():
            raise _hub_error(name_or_path, exc) from None
        raise ModelError(f"cannot load model from {name_or_path}: {str(exc).splitlines()[0]}") from None


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
               tokenizer=None, seed: int | None = None):
    """The model of a recipe's `model:` section (a ModelSection) with the task's head. A
    `from_config` source is a new model, sized to `tokenizer` and initialised from `seed`."""
    import transformers

    cls = getattr(transformers, TASK_MODEL_CLASSES[task])
    if source.from_config is not None:
        from ftcli.architectures import new_model

        if tokenizer is None or seed is None:
            raise ValueError("a model built from its config needs the run's tokenizer and seed")
        return new_model(cls, source.from_config, tokenizer, seed, label2id)
    _refuse_pickle(source)
    kwargs = _source_kwargs(source)
    if task == "sequence-classification" and label2id is not None:
        kwargs.update(num_labels=len(label2id), label2id=label2id,
                      id2label={i: label for label, i in label2id.items()})
        # A base model's head may have another label count (or none): start it fresh.
        kwargs["ignore_mismatched_sizes"] = True
    model = _load(cls.from_pretrained, source.name_or_path, **kwargs)
    if source.gguf_file:
        model = _plain_copy(model)
    if pad_token_id is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id  # classification pools the last non-pad token
    return model


def local_model(path) -> "ModelSection":
    """A ModelSection for a model directory ftcli wrote itself (a run's model/)."""
    from ftcli.recipe import ModelSection

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


def attach_lora(model, task: str, lora):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type=PEFT_TASK_TYPES[task])
    model = get_peft_model(model, config)
    from ftcli.fast_dropout import use_fast_lora_dropout

    use_fast_lora_dropout(model)
    return model


def save_atomically(save, final_dir: Path) -> None:
    """Write a directory through `save(tmp_dir)` and rename it into place, so `final_dir` is either
    complete or absent — never half-written if the process dies."""
    final_dir = Path(final_dir)
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    tmp.rename(final_dir)


def save_final_model(model, tokenizer, run_dir: Path, is_lora: bool) -> None:
    """Save `adapter/` (LoRA only) and `model/` (full weights, LoRA merged in) with the tokenizer."""
    if is_lora:
        save_atomically(model.save_pretrained, run_dir / "adapter")
        model = model.merge_and_unload()

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    save_atomically(save_model, run_dir / "model")


def save_sharded_final_model(trainer, tokenizer, run_dir: Path, is_lora: bool, load_base) -> None:
    """`save_final_model` for FSDP and DeepSpeed runs, where no process may hold the whole model:
    Trainer gathers it (every rank must call this), and rank 0 writes. A LoRA adapter is merged into
    a fresh copy of the base model (`load_base()`), as the sharded one cannot be merged in place."""
    from ftcli import distributed

    target = run_dir / ("adapter" if is_lora else "model")
    tmp = target.with_name(f".{target.name}.tmp")
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # collective: gathers the shards, writes on rank 0
    if not distributed.is_main():
        return
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    if is_lora:
        from peft import PeftModel

        merged = PeftModel.from_pretrained(load_base(), target).merge_and_unload()
        save_final_model(merged, tokenizer, run_dir, is_lora=False)


def import_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF file into a safetensors Hugging Face model directory (loads in well under a
    second afterwards, against ~20-30 s of de-quantizing the GGUF on every load)."""
    from ftcli.recipe import ModelSection

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
    save_atomically(save, out_dir)
    return out_dir
