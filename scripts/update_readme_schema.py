"""Rewrite README.md's recipe reference block from the schema (`ftcli schema`); a test checks they match.

    .venv/bin/python scripts/update_readme_schema.py
"""

import re
from pathlib import Path

from ftcli.recipe import reference_yaml

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text(encoding="utf-8")
# The reference block is the yaml block that starts with the task line.
pattern = re.compile(r"```yaml\ntask: causal-lm  # required:.*?```", re.S)
if not pattern.search(text):
    raise SystemExit("README.md: no recipe reference block found")
readme.write_text(pattern.sub(lambda _: f"```yaml\n{reference_yaml()}```", text, count=1), encoding="utf-8")
