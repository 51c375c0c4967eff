"""`ftcli recipes`: the recipes shipped in the checkout's recipes/ folder, one line each.

A recipe's first comment line says what it does (every shipped recipe opens with one; a test keeps it
so), so the listing reads the files themselves rather than a second list that could drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ftcli.errors import UserError

# src/ftcli/recipe/shipped.py → the checkout's root, where recipes/ lives beside src/.
RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"


@dataclass(frozen=True)
class ShippedRecipe:
    path: Path
    task: str
    summary: str


def _summary(text: str, width: int = 90) -> str:
    """The opening comment's first sentence (it may wrap over lines), cut to `width`."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#") or line.startswith("#   ") or "yaml-language-server" in line:
            if words or not line.startswith("#"):
                break  # the comment ended, or its command lines (`#   ftcli ...`) begin
            continue
        words.append(line.lstrip("#").strip())
    summary = " ".join(w for w in words if w)
    sentence_end = summary.find(". ")
    summary = summary[:sentence_end + 1] if sentence_end >= 0 else summary
    return summary if len(summary) <= width else summary[:width - 1].rstrip() + "…"


def shipped_recipes(folder: Path | None = None) -> list[ShippedRecipe]:
    """Every recipe under `folder` (default: the checkout's recipes/), sorted by path."""
    folder = folder or RECIPES_DIR
    if not folder.is_dir():
        raise UserError(f"no recipes folder at {folder}: the shipped recipes live in ftcli's source checkout "
                        "(git clone it, or write one with `ftcli init TASK`)")
    found = []
    for path in sorted(folder.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
        task = raw.get("task", "?") if isinstance(raw, dict) else "?"
        found.append(ShippedRecipe(path, task, _summary(text)))
    return found


def recipes_text(recipes: list[ShippedRecipe], relative_to: Path | None = None) -> str:
    """One line per recipe: its path, task and what it does."""
    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(relative_to or Path.cwd()))
        except ValueError:
            return str(path)

    rows = [(shown(r.path), r.task, r.summary) for r in recipes]
    width = max((len(p) for p, _, _ in rows), default=0)
    task_width = max((len(t) for _, t, _ in rows), default=0)
    return "".join(f"{p:<{width}}  {t:<{task_width}}  {s}\n" for p, t, s in rows)
