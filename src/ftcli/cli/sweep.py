"""ftcli sweep: a hyper-parameter search over a recipe (Optuna)."""

from __future__ import annotations

from ftcli.cli.base import app, guarded  # noqa: F401
