"""Shared base for every config section: unknown keys are errors, never silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A strict config section: extra keys fail validation and name their key path."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
