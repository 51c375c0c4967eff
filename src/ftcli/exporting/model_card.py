"""Model cards: the `README.md` written into a run's `model/` and `adapter/` and into every export.

A card is YAML front matter the Hugging Face Hub reads (license, base_model, library_name, tags,
datasets, pipeline_tag) and a body: how the model was trained (task, base model, data with row
counts, hyperparameters, LoRA settings), its metrics (train loss; base vs tuned eval results when
`ftcli eval` has run), the resolved recipe verbatim, and how to load it without ftcli.

The licence is not a recipe key. It comes from, in order: the caller (`ftcli export --license`), the
base model's own card (a local directory's README.md, or a hub model's README already in the local
cache: nothing is downloaded), or else `other`, with a note in the body saying it is undetermined.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ftcli import runs
from ftcli.data.sources import as_sources
from ftcli.exporting.card_sections import Kind, base_note, metrics_section, training_section, usage_section
from ftcli.io import is_local_path
from ftcli.recipe import load_run_recipe
from ftcli.versions import package_versions

CARD_FILE = "README.md"
UNKNOWN_LICENSE = "other"
PIPELINE_TAGS = {"causal-lm": "text-generation", "sequence-classification": "text-classification",
                 "seq2seq": "text2text-generation", "masked-lm": "fill-mask",
                 "reward-model": "text-classification"}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


# --- reading cards --------------------------------------------------------------------------------

def split_card(text: str) -> tuple[dict, str]:
    """(front matter as a dict, body) of a model card; ({}, text) when it has no front matter."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text
    return (data if isinstance(data, dict) else {}), text[match.end():]


def read_front_matter(path: Path) -> dict:
    try:
        return split_card(Path(path).read_text(encoding="utf-8"))[0]
    except (OSError, UnicodeDecodeError):
        return {}


def _base_card(name_or_path: str) -> dict:
    """The base model's own card front matter: a local README.md, or a hub model's cached one."""
    if is_local_path(name_or_path):
        return read_front_matter(Path(name_or_path).expanduser() / CARD_FILE)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, CARD_FILE)
    except Exception:  # an id the cache helper rejects: no card to read
        return {}
    return read_front_matter(Path(cached)) if isinstance(cached, str) else {}


def infer_license(recipe) -> str | None:
    """The base model's licence as its card states it, or None when it cannot be told offline."""
    if not recipe.model.name_or_path:
        return None
    found = _base_card(recipe.model.name_or_path).get("license")
    if isinstance(found, list):  # a card may list several; the Hub takes one
        found = found[0] if found else None
    return str(found) if found else None


# --- building a card ------------------------------------------------------------------------------

def hub_base_model(recipe) -> str | None:
    """The base model as a Hub id, or None (a local directory or a model built from its config)."""
    name = recipe.model.name_or_path
    return name if name and not is_local_path(name) and not recipe.model.gguf_file else None


def hub_datasets(recipe) -> list[str]:
    names: list[str] = []
    for data in (recipe.data.train, recipe.data.eval):
        if data is not None:
            names += [s.name for s in as_sources(data) if s.name and s.name not in names]
    return names


def front_matter(recipe, kind: Kind, license: str, base_model: str | None, extra_tags=()) -> dict:
    tags = ["ftcli", recipe.task]
    if recipe.lora:
        tags.append("lora")
    if kind == "adapter":
        tags.append("peft")
    if kind == "gguf":
        tags.append("gguf")
    # peft's own card names the base as `base_model:adapter:<path>`; the Hub derives that tag itself
    # from base_model, and a local path in it means nothing on the Hub.
    tags += [t for t in extra_tags if t not in tags and not str(t).startswith("base_model:")]
    data: dict[str, Any] = {"license": license}
    if base_model:
        data["base_model"] = base_model
    if kind != "gguf":  # the Hub recognises GGUF files by themselves
        data["library_name"] = "peft" if kind == "adapter" else "transformers"
    data["tags"] = tags
    datasets = hub_datasets(recipe)
    if datasets:
        data["datasets"] = datasets
    data["pipeline_tag"] = PIPELINE_TAGS[recipe.task]
    return data


def build_card(run_dir: Path, kind: Kind, *, where: str | None = None, license: str | None = None,
               base_model: str | None = None, extra_tags=(), gguf_name: str | None = None,
               gguf_type: str | None = None) -> str:
    """The model card text for a finished run: `kind` is what the card sits beside (the merged
    `model`, the peft `adapter`, or a `gguf` file); `where` is how a reader loads it (a folder or
    hub repo id); `base_model` a Hub id to name instead of the recipe's (e.g. for a local copy of
    a hub model)."""
    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir)
    recipe_text = (run_dir / runs.RECIPE_FILE).read_text(encoding="utf-8")
    train_results = runs.read_train_results(run_dir) or {}
    eval_path = run_dir / runs.EVAL_RESULTS
    eval_results = runs.read_json(eval_path) if eval_path.is_file() else None
    hub_base = base_model or hub_base_model(recipe)
    found_license = license or infer_license(recipe)
    meta = front_matter(recipe, kind, found_license or UNKNOWN_LICENSE, hub_base, extra_tags)
    where = where or str(run_dir / (runs.ADAPTER_DIR if kind == "adapter" else runs.MODEL_DIR))
    num_labels = _num_labels(run_dir) if recipe.task in ("sequence-classification", "reward-model") else None

    title = {"model": "fine-tuned model", "adapter": "LoRA adapter", "gguf": f"GGUF ({gguf_type or 'f16'})"}[kind]
    body = [f"# {run_dir.name}: {title}", "",
            f"Fine-tuned with ftcli from one YAML recipe "
            f"(task `{recipe.task}`)." + (" This folder holds the LoRA adapter alone, with the tokenizer; "
                                          "it needs the base model." if kind == "adapter" else
                                          _merged_note(recipe) if recipe.lora and kind == "model" else ""), ""]
    if not found_license:
        body += ["**Licence:** not determined (the base model's card did not say, or was not available "
                 "offline). The base model's licence applies; set it with `ftcli export --license ID`.", ""]
    body += training_section(recipe, train_results, base_note(recipe, hub_base, kind))
    body += metrics_section(train_results, eval_results)
    body += usage_section(recipe, kind, where, hub_base, num_labels, gguf_name)
    body += ["## Recipe", "", "The resolved recipe (`recipe.yaml` of the run; every default filled in):", "",
             "```yaml", recipe_text.rstrip("\n"), "```", ""]
    versions = package_versions(("ftcli", "transformers", "peft", "torch"))
    if versions:
        body += ["## Framework versions", ""] + [f"- {k} {v}" for k, v in versions.items()] + [""]
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{head}---\n\n" + "\n".join(body)


def _merged_note(recipe) -> str:
    if recipe.model.quantization is None:
        return " The LoRA adapter is merged into these weights."
    return (f" The LoRA adapter, trained on the base quantized to {recipe.model.quantization.bits} bits (QLoRA), is "
            "merged into a full-precision copy of the base: these weights load without bitsandbytes.")


def _num_labels(run_dir: Path) -> int | None:
    try:
        config = json.loads((run_dir / runs.MODEL_DIR / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    labels = config.get("id2label") or {}
    return len(labels) or None


def write_card(run_dir: Path, folder: Path, kind: Kind, **options) -> Path:
    """Write the card as `folder/README.md`. An existing card's extra tags (peft writes its own
    README.md into an adapter folder) are kept; the rest of it is replaced."""
    path = Path(folder) / CARD_FILE
    previous = read_front_matter(path) if path.is_file() else {}
    tags = list(options.pop("extra_tags", ())) + [t for t in previous.get("tags") or [] if isinstance(t, str)]
    path.write_text(build_card(run_dir, kind, extra_tags=tags, **options), encoding="utf-8")
    return path


def write_run_cards(run_dir: Path) -> list[Path]:
    """(Re)write the cards of a finished run: `model/README.md`, and `adapter/README.md` for LoRA."""
    run_dir = Path(run_dir)
    written = [write_card(run_dir, run_dir / runs.MODEL_DIR, "model")]
    if (run_dir / runs.ADAPTER_DIR).is_dir():
        written.append(write_card(run_dir, run_dir / runs.ADAPTER_DIR, "adapter"))
    return written


def refresh_run_cards(run_dir: Path, log=None) -> None:
    """write_run_cards after training or eval. A card that cannot be written is a warning, not a
    failure: the run itself is complete (FTCLI_DEBUG=1 raises instead)."""
    import os

    try:
        write_run_cards(run_dir)
    except Exception as exc:
        if os.environ.get("FTCLI_DEBUG", "") not in ("", "0"):
            raise
        if log:
            log(f"warning: could not write the model card: {type(exc).__name__}: {exc}")
