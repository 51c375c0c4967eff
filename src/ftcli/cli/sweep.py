"""ftcli sweep: a hyper-parameter search over a recipe (Optuna)."""

from __future__ import annotations

import typer

from ftcli.cli.base import app, guarded
from ftcli.cli_args import RecipeArg, SetOption


@app.command()
@guarded
def sweep(recipe: RecipeArg, set_: SetOption = None):
    """Search the recipe's sweep: parameters, each trial a run in <output_dir>/trials/NNN; prints the ranked
    trials and writes best.yaml, sweep.png and sweep_results.json. The same command resumes a stopped sweep
    (or, on a finished one, prints its table again)."""
    import ftcli

    result = ftcli.sweep(recipe, set_)
    typer.echo(result.table())
    if result.best_yaml:
        typer.echo(f"best: trial {result.best.trial:03d}; train it with: ftcli finetune {result.best_yaml}", err=True)
    typer.echo("files: " + ", ".join(result.files.values()), err=True)
