"""The CLI's shared argument types (Annotated aliases defined once, as hf's and fastapi's CLIs do) and
the checks of argument combinations that no single option can express. No heavy imports: `ftcli
--help` reads this module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ftcli.errors import UserError

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a recipe key, e.g. --set train.learning_rate=1e-4 (repeatable).",
    show_default=False)]
PlanJsonOption = Annotated[bool, typer.Option(
    "--json", help="Print only a JSON object: parameters, tokens, steps, memory (bytes), fits, time_s.")]
PlanProbeOption = Annotated[int, typer.Option(
    "--probe", min=0, help="Time N real training steps here for the time estimate (0: no probe).")]
GenPromptArg = Annotated[Optional[str], typer.Argument(
    help="The prompt (omit it with --file or --interactive).", show_default=False)]
GenModelOption = Annotated[Optional[str], typer.Option(
    "--model", help="Generate with this model (directory or hub id) directly; no run needed.", show_default=False)]
GenFileOption = Annotated[Optional[Path], typer.Option(
    "--file", "-f", help="Prompts file: .txt (one per line) or .jsonl ({\"prompt\": ...}); "
    "prints one JSON line per prompt.", show_default=False)]
GenOutputOption = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Write the results to this file instead of stdout.", show_default=False)]
GenStopOption = Annotated[Optional[list[str]], typer.Option(
    "--stop", help="Stop string; the output is cut at the first one (repeatable).", show_default=False)]
ExportRunArg = Annotated[str, typer.Argument(help="Run directory (or its recipe file).", show_default=False)]
ExportMergedOption = Annotated[bool, typer.Option("--merged", help="The full model, LoRA merged in (a folder).")]
ExportAdapterOption = Annotated[bool, typer.Option("--adapter", help="The LoRA adapter and tokenizer (a folder; "
                                          "LoRA runs).")]
ExportGgufOption = Annotated[Optional[Path], typer.Option("--gguf", help="A .gguf file for llama.cpp (Llama-family "
                                                 "causal LMs).", show_default=False)]
ExportGgufTypeOption = Annotated[str, typer.Option("--gguf-type", help="GGUF weights: f16 (faithful), q8_0 "
                                           "(half the size) or f32.")]
ExportToOption = Annotated[Optional[Path], typer.Option("--to", help="Folder to write (--merged / --adapter).",
                                               show_default=False)]
ExportOverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing export.")]
ExportPushToHubOption = Annotated[Optional[str], typer.Option(
        "--push-to-hub", help="Upload the export to this Hugging Face model repo (NAMESPACE/NAME).",
        show_default=False)]
ExportPrivateOption = Annotated[bool, typer.Option("--private", help="Create the Hub repo as private.")]
ExportLicenseOption = Annotated[Optional[str], typer.Option(
        "--license", help="Licence id for the model card (default: the base model's, when its card says).",
        show_default=False)]
ExportBaseModelOption = Annotated[Optional[str], typer.Option(
        "--base-model", help="The base model's Hub id, for a run trained from a local copy (card and "
        "adapter_config.json).", show_default=False)]


def check_generate_arguments(prompt, file, interactive: bool, stream: bool, output, run, recipe, base: bool,
                             model) -> None:
    """`ftcli generate`: exactly one input, and options that go together."""
    if model and (run or recipe or base):
        raise UserError("--model generates with a model directly; it cannot be combined with "
                        "--run, --recipe or --base")
    if run and recipe:
        raise UserError("give --run or --recipe, not both")
    inputs = [name for name, given in (("PROMPT", prompt is not None), ("--file", file is not None),
                                       ("--interactive", interactive)) if given]
    if len(inputs) != 1:
        raise UserError("give one of PROMPT, --file FILE or --interactive" if not inputs
                        else f"give only one of {', '.join(inputs)}")
    if stream and file is not None:
        raise UserError("--stream prints a single answer as it is generated; it does not work with --file")
    if output is not None and (stream or interactive):
        raise UserError("--output does not work with --stream or --interactive")


def export_kind(merged: bool, adapter: bool, gguf, gguf_type: str, to, push_to_hub) -> str:
    """`ftcli export`: which of --merged / --adapter / --gguf, and a destination that fits it."""
    kinds = [name for name, given in (("merged", merged), ("adapter", adapter), ("gguf", gguf is not None))
             if given]
    if len(kinds) != 1:
        raise UserError("give one of --merged, --adapter or --gguf FILE" if not kinds
                        else f"give only one of --{', --'.join(kinds)}")
    if gguf is not None and to is not None:
        raise UserError("--gguf names the file to write; --to is for --merged and --adapter")
    if gguf is None and to is None and not push_to_hub:
        raise UserError(f"say where to write the {kinds[0]} model: --to DIR (and/or --push-to-hub REPO)")
    if gguf is None and gguf_type != "f16":
        raise UserError("--gguf-type applies to --gguf only")
    return kinds[0]
