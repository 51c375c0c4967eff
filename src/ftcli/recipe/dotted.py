"""A recipe mapping as dotted keys, the spelling `--set` and error messages use: comparing two runs'
recipes (resuming, the report's comparison) is comparing these."""

from __future__ import annotations


def dotted_keys(tree: dict, prefix: str = "") -> dict:
    """{"train.learning_rate": 0.005, ...}: nested sections become dotted keys; an empty section and
    any other value (lists included) stay one value."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(dotted_keys(value, f"{name}."))
        else:
            flat[name] = value
    return flat
