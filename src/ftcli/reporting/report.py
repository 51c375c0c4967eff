"""The public report functions: one run's report.html and loss.png, several runs compared, and the
never-failing refresh training and `ftcli eval` call."""

from __future__ import annotations

import os
from pathlib import Path

from ftcli import runs
from ftcli.errors import UserError
from ftcli.io import write_atomically, write_text
from ftcli.reporting import history, plots
from ftcli.reporting.compare_page import compare_page
from ftcli.reporting.run_files import read_run
from ftcli.reporting.run_page import loss_plot, run_page

DEFAULT_COMPARISON = "report-compare.html"


def write_report(run_dir: str | Path) -> Path:
    """(Re)write <run>/report.html and <run>/loss.png from the run's files; returns the page's path."""
    run = read_run(run_dir)
    loss_png = loss_plot(run)
    write_atomically(run.run_dir / runs.LOSS_PNG, lambda handle: handle.write(loss_png))
    page = run.run_dir / runs.REPORT_HTML
    write_text(page, run_page(run, loss_png))
    return page


def compare_report(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """One page for several runs (loss curves overlaid, differing recipe keys, final metrics); returns its path."""
    if len(run_dirs) < 2:
        raise UserError("a comparison needs two runs or more", hint="name one run to rebuild its own report")
    found = [read_run(d) for d in run_dirs]
    names = [r.name for r in found]
    # Two runs named alike (runs/a/lr1, runs/b/lr1) are told apart by their parent folder.
    labels = [f"{r.run_dir.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in found]
    overlay = plots.loss_png([(label, history.train_loss(r.history), history.eval_loss(r.history))
                              for label, r in zip(labels, found)], "loss: " + " vs ".join(labels))
    path = Path(out or DEFAULT_COMPARISON).expanduser()
    if path.is_dir():
        path = path / DEFAULT_COMPARISON
    write_text(path, compare_page(found, overlay))
    return path


def refresh_report(run_dir: Path, log=None) -> Path | None:
    """write_report after training or eval. A report that cannot be written is a warning, not a
    failure: the run itself is complete (FTCLI_DEBUG=1 raises instead)."""
    try:
        return write_report(run_dir)
    except Exception as exc:
        if os.environ.get("FTCLI_DEBUG", "") not in ("", "0"):
            raise
        if log:
            log(f"warning: could not write the run report: {type(exc).__name__}: {exc}")
        return None
