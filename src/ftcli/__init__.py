"""ftcli: fine-tune Hugging Face models from one strict YAML recipe.

The public API mirrors the CLI, one function per command. Heavy libraries (torch, transformers,
datasets) load only when one of these is called, so importing ftcli stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

# bitsandbytes (imported by peft wherever it is installed) warns at import, on CPUs with AVX512-BF16, that
# its optional Hub-downloaded `kernels` package is missing: advice for an online install that offline
# runs cannot take, printed before every command's own output. Its real errors still show.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

if TYPE_CHECKING:
    from ftcli.recipe import Recipe

__version__ = "0.1.0"
__all__ = ["finetune", "sweep", "evaluate", "generate", "validate", "plan", "preview_data", "load_recipe",
           "export", "report", "attention"]


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> "Recipe":
    """Read and validate a recipe file; `overrides` are `key.path=value` strings."""
    from ftcli.recipe import load_recipe as _load

    return _load(path, overrides)


def _as_recipe(recipe: "Recipe | str | Path") -> "Recipe":
    return load_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe


def finetune(recipe: "Recipe | str | Path", overwrite: bool = False) -> Path:
    """Train as the recipe says; returns the run directory."""
    from ftcli.training.finetune import finetune as _finetune

    return _finetune(_as_recipe(recipe), overwrite=overwrite)


def sweep(recipe: "Recipe | str | Path", overrides: list[str] | None = None):
    """Run, resume or extend the recipe's hyper-parameter sweep (its `sweep:` section; Optuna, pip install
    'ftcli[sweep]'): each trial a normal run in <output_dir>/trials/NNN. Returns a SweepResult (ranked
    trials, best, files; `.table()` is the printed table)."""
    from ftcli.sweeping.sweep import sweep as _sweep

    return _sweep(recipe, overrides)


def evaluate(target: str | Path | None = None, base: bool = True, limit: int | None = None,
             harness: list[str] | str | None = None, **harness_options) -> dict:
    """Metrics of a run's tuned model and its base model on the run's eval data (and on lm-evaluation-harness
    tasks: `harness=["data/harness/pirate-choice.yaml"]`, with `harness_include`, `harness_chat_template`)."""
    from ftcli.evaluation.evaluate import evaluate_run

    return evaluate_run(target, base=base, limit=limit, harness=harness, **harness_options)


def generate(prompt: str, target: str | Path | None = None, **options) -> str:
    """Generated text for `prompt` from a run (default: the latest in the current directory)."""
    from ftcli.generation.generate import generate as _generate

    return _generate(prompt, target, **options)


def attention(text: str, target: str | Path | None = None, base: bool = False, model: str | None = None,
              decoder_text: str | None = None):
    """Attention weights for `text` (eager attention, float32, CPU) from a run (default: the latest in the
    current directory; `base`: its base model) or any `model`: an AttentionResult whose `attentions`
    holds tokens and weights[layer][head][query][key]; `.as_json()` gives nested lists. An
    encoder-decoder's `attentions` are its encoder's; with `decoder_text` also `decoder` and `cross`."""
    from ftcli.inspection.attention import attention as _attention

    return _attention(text, target, base=base, model=model, decoder_text=decoder_text)


def validate(recipe: "Recipe | str | Path") -> dict:
    """Check a recipe, its data and its model without training."""
    from ftcli.training.preflight import validate as _validate

    return _validate(_as_recipe(recipe))


def plan(recipe: "Recipe | str | Path", probe: int = 0):
    """A run's plan before training: parameters, tokens, steps, peak memory by part, whether it fits
    this machine (and what to change), and with probe=N the time from N timed steps."""
    from ftcli.training.plan import plan as _plan

    return _plan(_as_recipe(recipe), probe_steps=probe)


def preview_data(recipe: "Recipe | str | Path", n: int = 3):
    """Formatted, tokenized examples (loss-ignored tokens marked) and the length distribution."""
    from ftcli.training.preflight import preview_data as _preview

    return _preview(_as_recipe(recipe), n)


def export(run: str | Path, to: str | Path | None = None, kind: str = "merged", **options):
    """Export a finished run as "merged" (full model folder), "adapter" (peft adapter + tokenizer) or
    "gguf" (`to` is the .gguf file), with a model card; `push_to_hub="namespace/name"` uploads it.
    Options: gguf_type, overwrite, push_to_hub, private, license, base_model, token. Returns an
    ExportResult (kind, path, files, repo_id, url)."""
    # The room is `exporting`: a subpackage named `export` would replace this function on import.
    from ftcli.exporting.export import export as _export

    return _export(run, to, kind, **options)


def report(*runs: str | Path, out: str | Path | None = None) -> Path:
    """One run: rebuild its report.html and loss.png (returns the page). Several: one comparison page
    (loss curves overlaid, differing recipe keys, final metrics) at `out` (default ./report-compare.html)."""
    from ftcli.reporting.report import compare_report, write_report

    if not runs:
        from ftcli.errors import UserError

        raise UserError("name a run directory to report on")
    return write_report(runs[0]) if len(runs) == 1 else compare_report(list(runs), out)
