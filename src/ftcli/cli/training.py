"""Commands that prepare and run training: finetune, validate, plan, data preview."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ftcli.cli.base import _rank, app, guarded
from ftcli.cli_args import PlanJsonOption, PlanProbeOption, RecipeArg, SetOption


@app.command()
@guarded
def finetune(
    recipe: RecipeArg,
    set_: SetOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in output_dir.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Train in N processes on this machine (DDP "
                                       "through torch's elastic launcher; gloo on CPU).")] = 1,
):
    """Fine-tune a model as RECIPE says; writes the run directory (train.output_dir)."""
    import ftcli

    loaded = ftcli.load_recipe(recipe, set_)  # a bad recipe fails here, before any process starts
    if nproc > 1:
        from ftcli.training.distributed import launch_finetune

        code = launch_finetune(nproc, recipe, set_ or [], overwrite)
        if code:
            raise typer.Exit(code)
        return
    run_dir = ftcli.finetune(loaded, overwrite=overwrite)
    if _rank():
        return
    typer.echo(f"run finished: {run_dir}")
    from ftcli import runs

    if (run_dir / runs.REPORT_HTML).is_file():
        typer.echo(f"report: {run_dir / runs.REPORT_HTML}", err=True)
    hints = [f"ftcli eval {run_dir}"]
    if loaded.task in ("causal-lm", "seq2seq"):
        hints.append(f'ftcli generate "..." --run {run_dir}')
    typer.echo("next:\n" + "\n".join(f"  {h}" for h in hints), err=True)


@app.command()
@guarded
def validate(recipe: RecipeArg, set_: SetOption = None):
    """Check a recipe, its data and its model path without training."""
    import ftcli
    from ftcli.training.preflight import validation_text

    typer.echo(validation_text(recipe, ftcli.validate(ftcli.load_recipe(recipe, set_))))


@app.command()
@guarded
def plan(recipe: RecipeArg, set_: SetOption = None, as_json: PlanJsonOption = False, probe: PlanProbeOption = 0):
    """Before training: parameters, tokens, steps and the peak memory by part; whether it fits this
    machine, what to change when not, and (--probe N) how long it takes."""
    import ftcli
    from ftcli.training.plan_report import render

    result = ftcli.plan(ftcli.load_recipe(recipe, set_), probe=probe)
    typer.echo(json.dumps(result.as_json()) if as_json else render(result, recipe))


data_app = typer.Typer(help="Look at a recipe's data before training.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


@data_app.command("preview")
@guarded
def data_preview(
    recipe: RecipeArg,
    set_: SetOption = None,
    n: Annotated[int, typer.Option("-n", "--examples", min=0, help="Examples to show.")] = 3,
):
    """Show formatted, tokenized training examples (loss-ignored text marked) and their lengths."""
    import ftcli
    from ftcli.data.preview import render

    typer.echo(render(ftcli.preview_data(ftcli.load_recipe(recipe, set_), n)))
