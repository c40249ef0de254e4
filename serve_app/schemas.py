"""Request and response bodies of the serving API and the deployment's ``user_config``.

Strict types and ``extra="forbid"`` everywhere: a wrong type or an unknown field is a 422 that
names the field, never a silent coercion (Ray Serve itself ignores unknown ``user_config`` keys).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator


class RecommendRequest(BaseModel):
    """One user: a known ``user_id`` (the history comes from the run's data) or an explicit ``history``."""

    model_config = ConfigDict(extra="forbid")

    user_id: StrictStr | None = None
    history: list[StrictStr] | None = Field(default=None, description="catalog item ids, oldest first")
    k: StrictInt = 10
    exclude_seen: StrictBool = True
    policy: StrictStr | None = Field(default=None, description="a decoding policy of the served generator (beam, "
                                     "hybrid, dense_all, a name from the job's decode.policies, knobs as "
                                     "hybrid(weight=0.7)); none: the one the deployment serves")

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        if self.user_id is None and self.history is None:
            raise ValueError("give either 'user_id' or 'history'")
        if self.user_id is not None and self.history is not None:
            raise ValueError("give either 'user_id' or 'history', not both")
        return self


class BatchRequest(BaseModel):
    """Many users in one call; each entry is checked on its own (see ``BatchResponse``)."""

    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendRequest] = Field(min_length=1, max_length=1000)


class Item(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    items: list[Item]
    model: str
    model_version: str
    unknown_items: list[str] = Field(default_factory=list, description="history ids not in the catalog (ignored)")
    fallback: str | None = Field(default=None, description="'popular' when the history was empty")
    message: str | None = None


class BatchError(BaseModel):
    """A batch entry that could not be answered; the others still are."""

    status: int
    error: str
    unknown_items: list[str] = Field(default_factory=list)


class BatchResponse(BaseModel):
    results: list[RecommendResponse | BatchError]
    model_version: str


def known_models() -> list[str]:
    from cemg_ray.recommenders import MODELS

    return list(MODELS)


def check_model_ref(value: str) -> None:
    """Raise ValueError unless ``value`` is a registered model, optionally with a policy (``cemg:hybrid``); an old
    model name that is now a policy says what to write instead. The policy itself is checked against the run's
    job when the model loads."""
    from cemg_ray.generate.policy import PolicyError, legacy_hint
    from cemg_ray.recommenders import model_name

    try:
        name = model_name(value)
    except PolicyError as exc:
        raise ValueError(str(exc)) from None
    if name not in known_models():
        raise ValueError(legacy_hint(name) or f"unknown model {value!r}; known: {', '.join(known_models())}")


class ServeConfig(BaseModel):
    """The deployment's ``user_config``. Changing it at run time loads a new model version."""

    model_config = ConfigDict(extra="forbid")

    run_dir: str = Field(description="trained run directory: local path or s3://bucket/prefix")
    model: str | None = Field(default=None, description="a model of cemg_ray.recommenders.MODELS, optionally with a "
                              "decoding policy (cemg:hybrid); none: the run's default list (chosen on validation "
                              "by its evaluate stage), else cemg")
    max_k: int = Field(default=100, ge=1, le=10_000)
    max_history: int = Field(default=200, ge=1, description="longest history a request may send")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="larger request bodies get a 413")
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576, description="larger headers get a 431")
    read_timeout_s: float = Field(default=10.0, gt=0, le=300, description="a body slower than this gets a 408")
    api_key_env: str | None = Field(default=None, min_length=1, description="name of the environment variable "
                                    "holding the API key; unset = no key (local use). The key is never in YAML")
    max_batch_size: int = Field(default=32, ge=1, le=64, description="1 turns request batching off")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0.0, le=1.0)
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (credentials: AWS chain)")
    region: str | None = None

    @field_validator("model")
    @classmethod
    def _registered(cls, value: str | None) -> str | None:
        if value is not None:
            check_model_ref(value)
        return value
