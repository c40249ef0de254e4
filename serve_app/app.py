"""The serving deployment: FastAPI ingress, ``@serve.batch`` over the recommender, hot model reloads.

``serve run serve_app/config.yaml`` locally (after ``make demo``) or ``serve deploy`` of the same
file on a cluster. The model comes from ``user_config`` (see ``ServeConfig``); changing it loads
the new version beside the old one and swaps it in, so requests in flight are not failed.
"""


import asyncio
import logging
import os

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve

from serve_app import errors
from serve_app.errors import ClientError
from serve_app.model_state import ModelState
from serve_app.schemas import (
    BatchError,
    BatchRequest,
    BatchResponse,
    Item,
    RecommendRequest,
    RecommendResponse,
    ServeConfig,
)

log = logging.getLogger("cemg_ray.serve")

api = FastAPI(title="CEMG-Ray recommendations", version="1",
              description="Top-k items for a known user or an explicit history of item ids.")
_LIMITS = [errors.Limits()]  # replaced whole on every user_config, read by the request guard
errors.install(api, lambda: _LIMITS[0])


def limits_for(conf: ServeConfig) -> errors.Limits:
    """The request guard's limits for ``conf``; the API key is read from the replica's environment."""
    key = None
    if conf.api_key_env:
        key = os.environ.get(conf.api_key_env)
        if not key:
            raise ValueError(f"user_config.api_key_env: environment variable {conf.api_key_env!r} is not set on "
                             "the replica (set it in ray_actor_options.runtime_env.env_vars or the node's env)")
    return errors.Limits(max_body_bytes=conf.max_body_bytes, max_header_bytes=conf.max_header_bytes,
                         read_timeout_s=conf.read_timeout_s, api_key=key)


def validate_user_config(user_config: dict) -> ServeConfig:
    """What ``reconfigure`` accepts: unknown keys and bad values are errors naming the key."""
    if not isinstance(user_config, dict):
        raise ValueError(f"user_config: expected a mapping, got {type(user_config).__name__}")
    try:
        return ServeConfig.model_validate(user_config)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: "
                 f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}" for e in exc.errors()]
        raise ValueError("user_config: " + "; ".join(lines)) from None


@serve.deployment(name="Recommender", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8})
@serve.ingress(api)
class Recommender:
    """One replica: the current ``ModelState`` and a batching queue in front of it."""

    def __init__(self) -> None:
        self.state: ModelState | None = None
        self.reload_error: str | None = None
        self.stats = {"requests": 0, "model_calls": 0, "largest_batch": 0}  # what batching achieved

    async def reconfigure(self, user_config: dict) -> None:
        """Load the new version fully, then swap the reference.

        The first load must succeed (the replica never becomes ready otherwise). A later one that
        fails leaves the running version in place and reports the error on /readyz and /metadata.
        """
        try:
            conf = validate_user_config(user_config)
            limits = limits_for(conf)
            state = await asyncio.to_thread(ModelState, conf)
        except Exception as exc:
            if self.state is None:
                raise
            self.reload_error = f"{type(exc).__name__}: {exc}"
            log.error("serve: new user_config not applied, still serving %s: %s", self.state.model_version,
                      self.reload_error)
            return
        self._decode.set_max_batch_size(conf.max_batch_size)
        self._decode.set_batch_wait_timeout_s(conf.batch_wait_timeout_s)
        _LIMITS[0] = limits
        self.state, self.reload_error = state, None

    def _ready(self) -> ModelState:
        if self.state is None:
            raise ClientError(503, "no model loaded: the deployment needs user_config.run_dir")
        return self.state

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _decode(self, jobs: list[tuple[ModelState, np.ndarray, int, bool]]) -> list[list[tuple[str, float]]]:
        """Requests that arrive together go to the model as one batch (one per model version)."""
        out: list[list[tuple[str, float]]] = [[] for _ in jobs]
        self.stats["requests"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        for state in {id(j[0]): j[0] for j in jobs}.values():
            idx = [i for i, j in enumerate(jobs) if j[0] is state]
            self.stats["model_calls"] += 1
            lists = await asyncio.to_thread(state.rank, [jobs[i][1] for i in idx], [jobs[i][2] for i in idx],
                                            [jobs[i][3] for i in idx])
            for i, ranked in zip(idx, lists):
                out[i] = ranked
        return out

    async def _one(self, state: ModelState, req: RecommendRequest) -> RecommendResponse:
        if not 1 <= req.k <= state.conf.max_k:
            raise ClientError(422, f"k must be between 1 and {state.conf.max_k} (got {req.k})")
        if req.history is not None and len(req.history) > state.conf.max_history:
            raise ClientError(422, f"history has {len(req.history)} items; at most {state.conf.max_history} "
                              "are accepted")
        resolved = state.resolve(req.user_id, req.history)
        if resolved.error:
            raise ClientError(resolved.status, resolved.error, unknown_items=resolved.unknown)
        ranked = await self._decode((state, resolved.history, req.k, req.exclude_seen))
        empty = len(resolved.history) == 0
        message = None
        if empty:
            message = "empty history: most popular items"
        elif resolved.unknown:
            message = f"{len(resolved.unknown)} unknown item id(s) ignored"
        return RecommendResponse(items=[Item(item_id=i, score=s) for i, s in ranked], model=state.conf.model,
                                 model_version=state.model_version, unknown_items=resolved.unknown,
                                 fallback="popular" if empty else None, message=message)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Top-k for one user (``user_id``) or one history; see ``RecommendRequest``."""
        return await self._one(self._ready(), req)

    @api.post("/recommend/batch", response_model=BatchResponse)
    async def recommend_batch(self, body: BatchRequest) -> BatchResponse:
        """Many users at once; an entry that cannot be answered gets its own error, the rest still answer."""
        state = self._ready()
        results = await asyncio.gather(*(self._one(state, r) for r in body.requests), return_exceptions=True)
        out: list[RecommendResponse | BatchError] = []
        for r in results:
            if isinstance(r, ClientError):
                out.append(BatchError(status=r.status, error=r.message, unknown_items=r.extra.get("unknown_items", [])))
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r)
        return BatchResponse(results=out, model_version=state.model_version)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Model, code table and catalog are loaded (readiness)."""
        if self.state is None:
            return JSONResponse(status_code=503, content={"ready": False, "reason": "model not loaded"})
        return JSONResponse(content={"ready": True, "model_version": self.state.model_version,
                                     "reload_error": self.reload_error})

    @api.get("/metadata")
    async def metadata(self) -> dict:
        """Model version, catalog size and code configuration of the version being served."""
        return {**self._ready().metadata(), "reload_error": self.reload_error,
                "max_batch_size": self._decode._get_max_batch_size(), "replica_stats": dict(self.stats)}


app = Recommender.bind()
