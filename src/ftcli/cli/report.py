"""ftcli report: a run report (report.html, loss.png), one run or several overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ftcli.cli.base import app, guarded


@app.command()
@guarded
def report(
    runs: Annotated[list[str], typer.Argument(
        metavar="RUN", help="Run directories: one rebuilds its report.html and loss.png; several write one "
        "comparison page.", show_default=False)],
    out: Annotated[Optional[Path], typer.Option("--out", help="Where the comparison goes "
                                                "(default ./report-compare.html).", show_default=False)] = None,
):
    """Write a run's report (loss curves, metrics, data, environment, recipe) or compare several runs."""
    import ftcli
    from ftcli.errors import UserError

    if out is not None and len(runs) == 1:
        raise UserError("--out is for comparisons; one run's report is written into its directory",
                        hint=f"ftcli report {runs[0]}  (writes {Path(runs[0]) / 'report.html'})")
    typer.echo(ftcli.report(*runs, out=out))
