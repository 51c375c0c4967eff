"""Commands about recipes themselves: schema."""

from __future__ import annotations

import typer

from ftcli.cli.base import app


@app.command()
def schema():
    """Print every recipe key with its default and meaning (commented YAML)."""
    from ftcli.recipe.reference import reference_yaml

    typer.echo(reference_yaml(), nl=False)
