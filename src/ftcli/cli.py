"""The `ftcli` command line: thin commands over the library, and errors turned into exit codes.

Exit codes: 0 ok; 2 user error (recipe, data, arguments, model path); 1 internal error;
3 training failed; 130 interrupted. FTCLI_DEBUG=1 shows tracebacks.
No heavy imports at module level: `ftcli --help` must stay fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="ftcli",
    help="Fine-tune Hugging Face models from one YAML recipe: finetune → eval → generate.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a recipe key, e.g. --set train.learning_rate=1e-4 (repeatable).",
    show_default=False)]


def _version(value: bool) -> None:
    if value:
        from ftcli import __version__

        typer.echo(f"ftcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Show the version and exit.")] = False) -> None:
    """Fine-tune Hugging Face models from one YAML recipe: finetune → eval → generate."""


def _debug() -> bool:
    return os.environ.get("FTCLI_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int) -> None:
    typer.echo(f"{'stopped' if code == 130 else 'error'}: {message}", err=True)
    raise typer.Exit(code)


def guarded(command):
    """Run a command, mapping our errors to short messages and exit codes."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from ftcli.errors import FtcliError

        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except FtcliError as exc:
            if _debug():
                raise
            _fail(exc.render(), exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("\ninterrupted", err=True)
            raise typer.Exit(130)
        except Exception as exc:  # a bug: say so briefly, keep the traceback one variable away
            if _debug():
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc}\n"
                  "(set FTCLI_DEBUG=1 for the traceback, and please report it)", 1)

    return wrapper


@app.command()
@guarded
def finetune(
    recipe: RecipeArg,
    set_: SetOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in output_dir.")] = False,
):
    """Fine-tune a model as RECIPE says; writes the run directory (train.output_dir)."""
    import ftcli

    loaded = ftcli.load_recipe(recipe, set_)
    run_dir = ftcli.finetune(loaded, overwrite=overwrite)
    typer.echo(f"run finished: {run_dir}")
    hints = [f"ftcli eval {run_dir}"]
    if loaded.task == "causal-lm":
        hints.append(f'ftcli generate "..." --run {run_dir}')
    typer.echo("next:\n" + "\n".join(f"  {h}" for h in hints), err=True)


@app.command("eval")
@guarded
def eval_(
    target: Annotated[Optional[str], typer.Argument(
        help="Run directory or recipe file (default: the latest finished run here).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON object on stdout.")] = False,
    no_base: Annotated[bool, typer.Option("--no-base", help="Skip the base model.")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N examples.")] = None,
    compare: Annotated[Optional[list[str]], typer.Option(
        "--compare", help="Runs to show in one table (repeatable; uses each run's saved eval results).",
        show_default=False)] = None,
):
    """Metrics for the tuned model and its base model on the run's eval data."""
    import ftcli
    from ftcli import reports

    if compare:
        from ftcli.evaluation import compare_runs

        found = compare_runs(([target] if target else []) + compare)
        typer.echo(json.dumps([{k: r[k] for k in ("run", "tuned", "base") if k in r} for r in found])
                   if as_json else reports.compare_table(found))
        return
    results = ftcli.evaluate(target, base=not no_base, limit=limit)
    if as_json:
        typer.echo(json.dumps({k: results[k] for k in ("run", "tuned", "base") if k in results}))
        return
    typer.echo(reports.metrics_table(results))
    details = results["tuned_details"]
    if "per_class" in details:
        typer.echo("\ntuned model, per class:\n" + reports.per_class_table(details["per_class"]))
        typer.echo("\n" + reports.confusion_table(details["confusion_matrix"], details["labels"]))
        typer.echo(f"(confusion matrix picture: {results['confusion_matrix_png']})")
    for sample in details.get("samples", [])[:3]:
        typer.echo(f"\nprompt:    {sample['prompt']}\nreference: {sample['reference']}\n"
                   f"generated: {sample['generated']}")


@app.command()
@guarded
def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt.", show_default=False)],
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: latest run).")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Recipe whose output_dir is the run.")] = None,
    base: Annotated[bool, typer.Option("--base", help="Use the run's base model instead.")] = False,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1)] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, help="0 → greedy.")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
):
    """Generate a reply with a run's tuned model; prints only the text on stdout."""
    import ftcli

    if run and recipe:
        _fail("give --run or --recipe, not both", 2)
    text = ftcli.generate(prompt, run or recipe, base=base, max_new_tokens=max_new_tokens,
                          temperature=temperature, top_p=top_p, seed=seed)
    typer.echo(text)


@app.command()
@guarded
def validate(recipe: RecipeArg, set_: SetOption = None):
    """Check a recipe, its data and its model path without training."""
    import ftcli

    report = ftcli.validate(ftcli.load_recipe(recipe, set_))
    mode = {"sft": "SFT (prompt/response, loss on responses)", "text": "plain-text language modelling",
            "classification": "sequence classification"}[report["mode"]]
    typer.echo(f"{recipe}: ok\n  task:   {report['task']} — {mode}\n"
               f"  data:   {report['train_rows']} train rows, {report['eval_rows']} eval rows"
               + (f", {report['dropped_rows']} incomplete rows dropped" if report["dropped_rows"] else "")
               + (f"\n  prompt: {report['prompt_format']}" if report["prompt_format"] else "")
               + f"\n  model:  {report['model']}{' + LoRA' if report['lora'] else ''}"
               f"\n  output: {report['output_dir']}")


@app.command("import-gguf")
@guarded
def import_gguf(
    gguf_file: Annotated[Path, typer.Argument(help="A .gguf model file.", show_default=False)],
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the safetensors model to.",
                                            show_default=False)],
):
    """Convert a GGUF model into a Hugging Face (safetensors) directory that loads fast."""
    from ftcli.modeling import import_gguf as convert

    typer.echo(f"converted: {convert(gguf_file, out_dir)}")


def main() -> None:
    if not _debug():
        # Our own messages say what happened; library notices (load reports, deprecations) are
        # noise to a CLI user. FTCLI_DEBUG=1 shows everything.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-file load bars; training keeps its bar
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    app(prog_name="ftcli")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
