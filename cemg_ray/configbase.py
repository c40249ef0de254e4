"""Shared base for every config section: unknown keys are errors, never silently ignored."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _takes_int_not_bool(annotation: Any) -> bool:
    if annotation is int:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return int in args and bool not in args
    return False


class Section(BaseModel):
    """A strict config section: extra keys fail validation and name their key path.

    A boolean given for a size or count (``batch_size: true``) is an error, not the number 1.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and _takes_int_not_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected an integer, got a boolean")
        return value
