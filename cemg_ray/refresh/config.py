"""The ``refresh`` section of a job (``jobs/refresh.yaml``): where versions go, the fine-tune budget, the rule."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from cemg_ray.configbase import Section


class RefreshConfig(Section):
    """``cemg-ray refresh JOB INCREMENT``: the job's ``run_dir`` is the trained run the first refresh starts from;
    later ones start from the version ``<root>/serving.json`` names (the one serving reads)."""

    # versions (<root>/v0001, ...) and the serving marker <root>/serving.json; a local path or s3://bucket/prefix
    root: str = "runs/refresh"
    # the fine-tune's budget; every other generator setting (optimizer, lr, schedule) is the previous run's
    epochs: int = Field(3, ge=1)
    max_train_s: float | None = Field(60.0, gt=0)
    # promote when new >= previous - margin on ``metric`` over the holdout (a negative margin demands a gain)
    metric: str = "NDCG@10"
    margin: float = Field(0.01, ge=-1, le=1)
    # "increment": the users the increment touched, each judged on their newest interaction; "all": every user's
    # newest interaction. Fewer than ``min_holdout_users`` touched users: every user's (the report says so)
    holdout: Literal["increment", "all"] = "increment"
    min_holdout_users: int = Field(20, ge=1)
    # the list both models are judged with; None: each run's default list (what serving answers with)
    model: str | None = None
    # an increment whose malformed rows (unknown ids, nulls, wrong types) exceed this share is rejected unread
    max_bad_row_share: float = Field(0.1, ge=0, le=1)
    # on promotion: the bulk export of the new version (export section of the previous run), and a Serve config
    # (``serve_template`` with the ModelReplica's user_config.run_dir set to the new version) at ``serve_config``,
    # whose ``serve deploy`` makes the running replicas load it beside the old one and swap (hot reload)
    export: bool = True
    serve_config: str | None = None
    serve_template: str = "serve_app/config.yaml"

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not re.fullmatch(r"(HR|NDCG)@[1-9][0-9]*", value):
            raise ValueError(f"expected HR@K or NDCG@K (e.g. NDCG@10), got {value!r}")
        return value

    @property
    def k(self) -> int:
        return int(self.metric.split("@")[1])
