"""Request and response bodies of the serving API; unknown fields and wrong types are 422s."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator


class RecommendRequest(BaseModel):
    """One user: a known ``user_id`` (their history comes from the run's data), or a ``history``."""

    model_config = ConfigDict(extra="forbid")

    user_id: StrictStr | None = None
    history: list[StrictStr] | None = Field(default=None, max_length=10_000)
    k: StrictInt = 10
    exclude_seen: StrictBool = True

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        if self.user_id is None and self.history is None:
            raise ValueError("give either 'user_id' or 'history'")
        if self.user_id is not None and self.history is not None:
            raise ValueError("give either 'user_id' or 'history', not both")
        return self


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendRequest] = Field(min_length=1, max_length=1000)


class Item(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    items: list[Item]
    model_version: str
    unknown_items: list[str] = []
    fallback: str | None = None  # "popular" when the history was empty


class BatchResponse(BaseModel):
    results: list[RecommendResponse]
    model_version: str


class ServeConfig(BaseModel):
    """``user_config`` of the deployment; a typo is an error (Ray Serve itself ignores unknown keys)."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str
    model: str = "cemg"
    max_k: int = Field(default=100, ge=1)
    max_history: int = Field(default=200, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    endpoint_url: str | None = None
    region: str | None = None
