"""ftcli attention: what the model attends to."""

from __future__ import annotations

from ftcli.cli.base import app, guarded  # noqa: F401
