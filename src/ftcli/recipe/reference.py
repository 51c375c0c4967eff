"""The recipe reference: every key of the schema with its default and meaning, as commented YAML.

README's recipe block and `ftcli schema` both come from here, so the docs cannot drift from the schema
(a test compares them).
"""

from __future__ import annotations

import yaml
from pydantic import BaseModel

from ftcli.recipe.schema import TASKS, DataSource, FewShotExample, Recipe, _nested_model


def reference_yaml() -> str:
    """Every recipe key with its default and description, as commented YAML: the recipe reference in
    README and `ftcli schema` both come from here, so the docs cannot drift from the schema."""
    lines = ["task: causal-lm  # required: " + " | ".join(TASKS)]

    def section(model: type[BaseModel], indent: str, commented: bool = False) -> None:
        for name, field in model.model_fields.items():
            # A field that also takes a plain string (data.train) is shown as a value; its mapping
            # form is listed after the sections.
            nested = None if _takes_string(field.annotation) else _nested_model(field.annotation)
            note = f"  # {field.description}" if field.description else ""
            if nested is not None and nested is not FewShotExample:
                start = len(lines)
                lines.append(f"{indent}{name}:{note}")
                section(nested, indent + "  ", commented)
                if field.default is None and not commented:  # an optional section (model.quantization): off
                    lines[start:] = [indent + "# " + line.removeprefix(indent) for line in lines[start:]]
                continue
            example = (field.json_schema_extra or {}).get("example")
            if example is not None:  # a required mapping (sweep.parameters) reads best as an example
                value = example
                note = f"  # ({'required; ' if field.is_required() else ''}example) {field.description}"
            elif field.is_required():
                value = "REQUIRED"
            else:
                default = field.get_default(call_default_factory=True)
                value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("\n...")
            lines.append(f"{indent}{name}: {value}{note}")

    for name, field in Recipe.model_fields.items():
        if name == "task":
            continue
        nested = _nested_model(field.annotation)
        note = f"  # {field.description}" if field.description else ""
        start = len(lines)
        lines.append(f"{name}:{note}")
        optional = field.default is None and name != "lora"  # an optional section: shown, commented out
        section(nested, "  ", commented=optional)
        if optional:
            lines[start:] = ["# " + line for line in lines[start:]]
    lines.append("# A data source mapping (data.train / data.eval, alone or in a list):")
    for name, field in DataSource.model_fields.items():
        default = field.get_default(call_default_factory=True)
        value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("\n...")
        lines.append(f"#   {name}: {value}  # {field.description}")
    return "\n".join(lines) + "\n"


def _takes_string(annotation) -> bool:
    return annotation is str or str in getattr(annotation, "__args__", ())
