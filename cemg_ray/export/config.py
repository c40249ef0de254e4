"""Config of the bulk export stage."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field, field_validator

from cemg_ray.configbase import Section


class ExportConfig(Section):
    output: str | None = None  # s3://bucket/prefix or a local path; default: <run_dir>/export
    date: str | None = None  # the dt=YYYY-MM-DD partition; default: today (UTC)
    # any model of the registry (popularity, sasrec, cemg, ...); None: the run's default list, chosen on validation
    # by the evaluate stage (evaluate.select_default), else cemg
    model: str | None = None
    k: int = Field(10, ge=1)
    exclude_seen: bool = True  # drop items anywhere in the user's sequence, not only in the decoded history
    batch_size: int = Field(256, ge=1)
    num_blocks: int | None = Field(None, ge=1)  # input blocks (parallelism); default: 4 per actor
    num_actors: int = Field(1, ge=1)
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    force: bool = False  # re-export even when the partition is already committed for this model version

    @field_validator("date", mode="before")
    @classmethod
    def _date_as_string(cls, value: object) -> object:
        """YAML reads ``2026-11-25`` as a date: accept it as the partition's string."""
        return value.isoformat() if isinstance(value, date) else value

    @field_validator("date")
    @classmethod
    def _is_a_date(cls, value: str | None) -> str | None:
        """A bad date is a config error (with its key path), not a failure after the model has loaded."""
        if value is not None:
            try:
                datetime.strptime(value, "%Y-%m-%d")
            except ValueError:
                raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None
        return value
