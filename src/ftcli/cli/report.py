"""ftcli report: a run report (report.html, loss.png), one run or several overlaid."""

from __future__ import annotations

from ftcli.cli.base import app, guarded  # noqa: F401
