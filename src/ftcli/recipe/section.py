"""The base of every recipe section: strict (unknown keys are errors), finite numbers, no booleans
read as numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


class Section(BaseModel):
    # extra="forbid": unknown keys are errors; allow_inf_nan=False: `.nan`/`.inf` never reach training.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        # pydantic would read `batch_size: true` as 1; in a recipe that is always a mistake.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and bool not in getattr(annotation, "__args__", (annotation,)):
            raise ValueError(f"expected {_type_name(annotation)}, not a boolean")
        return value


def _type_name(annotation) -> str:
    members = getattr(annotation, "__args__", (annotation,))
    return " or ".join(getattr(m, "__name__", str(m)) for m in members if m is not type(None))


def _nested_model(annotation) -> type[BaseModel] | None:
    """The schema class inside an annotation such as `LoraSection | None` or `list[FewShotExample]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if (found := _nested_model(arg)) is not None:
            return found
    return None
