"""Commands about recipes themselves: schema (YAML reference or JSON Schema), init (a starter), recipes
(the shipped ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ftcli.cli.base import app, guarded


@app.command()
def schema(
    as_json: Annotated[bool, typer.Option(
        "--json", help="A JSON Schema for editors (YAML language server: completion, hover docs, typo "
                       "marks) instead of the commented YAML.")] = False,
):
    """Print every recipe key with its default and meaning (commented YAML), or --json a JSON Schema."""
    if as_json:
        from ftcli.recipe.json_schema import recipe_json_schema

        typer.echo(json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False))
        return
    from ftcli.recipe.reference import reference_yaml

    typer.echo(reference_yaml(), nl=False)


@app.command()
@guarded
def init(
    task: Annotated[str, typer.Argument(
        help="causal-lm, dpo, sequence-classification, masked-lm, seq2seq or reward-model.", show_default=False,
        autocompletion=lambda: __import__("ftcli.recipe.starters", fromlist=["STARTERS"]).STARTERS)],
    model: Annotated[Optional[str], typer.Option(
        "--model", help="The model to name (directory or hub id; default: the task's example model).",
        show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the recipe to this file (never over an existing one) instead of stdout.",
        show_default=False)] = None,
):
    """Print (or -o write) a commented starter recipe for TASK that validates as written."""
    from ftcli.errors import UserError
    from ftcli.recipe.starters import starter_recipe

    text = starter_recipe(task, model)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists():
        raise UserError(f"{output} exists: choose another file, or remove it first")
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}\nnext: ftcli validate {output}", err=True)


@app.command()
@guarded
def recipes():
    """List the shipped recipes, one line each: path, task, what it does."""
    from ftcli.recipe.shipped import recipes_text, shipped_recipes

    typer.echo(recipes_text(shipped_recipes()), nl=False)
