"""The serving deployment: FastAPI ingress, ``@serve.batch`` over the decoder, hot model reloads.

Run locally with ``serve run serve_app/config.yaml`` (after ``make demo``), or deploy the same
file to a cluster with ``serve deploy``. Every client error is a 4xx with a message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve

from serve_app.model_state import ModelState
from serve_app.schemas import BatchRequest, BatchResponse, Item, RecommendRequest, RecommendResponse, ServeConfig

log = logging.getLogger("cemg_ray.serve")

api = FastAPI(title="CEMG-Ray recommendations", version="1")
MAX_BODY_BYTES = 1_000_000


class ClientError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@api.exception_handler(RequestValidationError)
async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"error": "invalid request", "details": errors})


@api.exception_handler(ClientError)
async def _client_error(_request: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"error": exc.message, **exc.extra})


@api.middleware("http")
async def _limit_body(request: Request, call_next):  # noqa: ANN001, ANN202
    """Reject oversized bodies before parsing them (413), by header and by actual size."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return JSONResponse(status_code=413, content={"error": f"request body over {MAX_BODY_BYTES} bytes"})
    return await call_next(request)


@serve.deployment(name="Recommender", max_ongoing_requests=64,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8})
@serve.ingress(api)
class Recommender:
    def __init__(self, run_dir: str | None = None, model: str = "cemg"):
        self.state: ModelState | None = None
        self.loading_error: str | None = None
        if run_dir:  # direct construction (tests, Python API); YAML deployments use user_config
            self.reconfigure({"run_dir": run_dir, "model": model})

    def reconfigure(self, user_config: dict) -> None:
        """Load the new version fully, then swap: in-flight requests keep the version they started with."""
        global MAX_BODY_BYTES
        conf = ServeConfig.model_validate(user_config)  # unknown keys fail the deployment, loudly
        state = ModelState(conf)
        MAX_BODY_BYTES = conf.max_body_bytes
        self.state = state

    def _ready(self) -> ModelState:
        if self.state is None:
            raise ClientError(503, "model not loaded yet")
        return self.state

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _decode(self, jobs: list[tuple[ModelState, np.ndarray, int, bool]]) -> list[list[tuple[str, float]]]:
        """Requests that arrive together are decoded as one batch (per model version)."""
        out: list[list[tuple[str, float]]] = [[] for _ in jobs]
        for state in {id(j[0]): j[0] for j in jobs}.values():
            idx = [i for i, j in enumerate(jobs) if j[0] is state]
            lists = await asyncio.to_thread(state.recommend, [jobs[i][1] for i in idx], [jobs[i][2] for i in idx],
                                            [jobs[i][3] for i in idx])
            for i, lst in zip(idx, lists):
                out[i] = lst
        return out

    async def _one(self, state: ModelState, req: RecommendRequest) -> RecommendResponse:
        if not 1 <= req.k <= state.conf.max_k:
            raise ClientError(422, f"k must be between 1 and {state.conf.max_k} (got {req.k})")
        if req.history is not None and len(req.history) > state.conf.max_history:
            raise ClientError(422, f"history has {len(req.history)} items; at most {state.conf.max_history}")
        resolved = state.resolve(req.user_id, req.history)
        if resolved.error:
            status = 404 if req.user_id is not None else 422
            raise ClientError(status, resolved.error, unknown_items=resolved.unknown)
        ranked = await self._decode((state, resolved.history, req.k, req.exclude_seen))
        return RecommendResponse(items=[Item(item_id=i, score=s if np.isfinite(s) else -1e30) for i, s in ranked],
                                 model_version=state.model_version, unknown_items=resolved.unknown,
                                 fallback="popular" if len(resolved.history) == 0 else None)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        return await self._one(self._ready(), req)

    @api.post("/recommend/batch", response_model=BatchResponse)
    async def recommend_batch(self, body: BatchRequest) -> BatchResponse:
        state = self._ready()
        results = await asyncio.gather(*(self._one(state, r) for r in body.requests), return_exceptions=True)
        for i, r in enumerate(results):
            if isinstance(r, ClientError):
                raise ClientError(r.status, f"requests[{i}]: {r.message}", **r.extra)
            if isinstance(r, BaseException):
                raise r
        return BatchResponse(results=results, model_version=state.model_version)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        if self.state is None:
            return JSONResponse(status_code=503, content={"ready": False, "reason": "model not loaded"})
        return JSONResponse(content={"ready": True, "model_version": self.state.model_version})

    @api.get("/metadata")
    async def metadata(self) -> dict:
        return self._ready().metadata()


def validate_user_config(user_config: dict) -> ServeConfig:
    """What ``reconfigure`` accepts; used by tests and the cluster-spec checks."""
    try:
        return ServeConfig.model_validate(user_config)
    except ValidationError as exc:
        raise ValueError(f"serve user_config: {exc}") from exc


app = Recommender.bind()
