"""The recipe as a JSON Schema (`ftcli schema --json`), for editors: the YAML language server reads it
to complete keys, show each key's meaning and default on hover, and mark a typo before anything runs.

It is pydantic's own schema of the `Recipe` model, so it cannot drift from what `load_recipe` accepts:
every section forbids unknown keys (`additionalProperties: false`), enums list their choices, and each
field carries its description and default. Cross-field rules (a validator such as "load_best_model_at_end
needs eval_strategy") stay with `ftcli validate`; JSON Schema checks the shape.
"""

from __future__ import annotations

from ftcli.recipe.schema import Recipe

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def recipe_json_schema() -> dict:
    """The JSON Schema of a recipe file, with descriptions and defaults."""
    schema = Recipe.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "ftcli recipe",
        "description": "A recipe for `ftcli finetune`: task, model, data and the training settings "
                       "(`ftcli schema` prints every key with its default and meaning).",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }
