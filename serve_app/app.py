"""The serving application: a thin HTTP ingress in front of replicated model deployments.

``Ingress`` (FastAPI, one small replica per proxy) validates the request, guards the body, headers and
API key, and calls ``ModelReplica`` through a deployment handle. ``ModelReplica`` replicas hold the model
and batch what arrives together (``@serve.batch``). Splitting them, as Ray's own model-composition
examples do, is what lets a request survive a model replica's death: a recommendation is idempotent,
so the ingress retries it on another replica instead of returning the proxy's plain-text 500.

``serve run serve_app/config.yaml`` locally (after ``make demo``) or ``serve deploy`` of the same
file on a cluster. The model comes from the ModelReplica's ``user_config`` (see ``ServeConfig``); changing
it loads the new version beside the old one and swaps it in, so requests in flight are not failed.
"""


import asyncio
import json
import logging
import os
import time
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle

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
# what a call through the handle raises when the replica, not the request, failed: safe to retry (idempotent)
REPLICA_FAILURES = (ActorDiedError, ActorUnavailableError, RayActorError)

api = FastAPI(title="CEMG-Ray recommendations", version="1",
              description="Top-k items for a known user or an explicit history of item ids.")
_INGRESS: list["Ingress"] = []  # the ingress replica of this process; the request guard asks it for the limits


async def _current_limits() -> errors.Limits:
    return await _INGRESS[0].limits() if _INGRESS else errors.Limits()


errors.install(api, _current_limits)
RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # a replacement replica starts within a few seconds
CALL_TIMEOUT_S = 8.0  # one attempt; a recommendation takes well under a second on a replica that is alive
LIMITS_TTL_S = 2.0


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


@serve.deployment(name="ModelReplica", max_ongoing_requests=64, ray_actor_options={"num_cpus": 1},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8})
class ModelReplica:
    """One model replica: the current ``ModelState`` and a batching queue in front of it.

    Its methods answer the ingress with ``(status, JSON body)``: a client error is an answer, not an
    exception, so only a replica failure reaches the ingress as one (and is retried there).
    """

    def __init__(self) -> None:
        self.limits: errors.Limits | None = None
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
        self.limits = limits
        self.state, self.reload_error = state, None

    def _ready(self) -> ModelState:
        if self.state is None:
            raise ClientError(503, "no model loaded: the deployment needs user_config.run_dir")
        return self.state

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _decode(self, jobs: list[tuple[ModelState, np.ndarray, int, bool, str | None]]
                      ) -> list[list[tuple[str, float]]]:
        """Requests that arrive together go to the model as one batch (one per model version and policy)."""
        out: list[list[tuple[str, float]]] = [[] for _ in jobs]
        self.stats["requests"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        for state, policy in {(id(j[0]), j[4]): (j[0], j[4]) for j in jobs}.values():
            idx = [i for i, j in enumerate(jobs) if j[0] is state and j[4] == policy]
            self.stats["model_calls"] += 1
            lists = await asyncio.to_thread(state.rank, [jobs[i][1] for i in idx], [jobs[i][2] for i in idx],
                                            [jobs[i][3] for i in idx], policy)
            for i, ranked in zip(idx, lists):
                out[i] = ranked
        return out

    async def _one(self, state: ModelState, req: RecommendRequest) -> RecommendResponse:
        if not 1 <= req.k <= state.conf.max_k:
            raise ClientError(422, f"k must be between 1 and {state.conf.max_k} (got {req.k})")
        if req.history is not None and len(req.history) > state.conf.max_history:
            raise ClientError(422, f"history has {len(req.history)} items; at most {state.conf.max_history} "
                              "are accepted")
        try:
            rec = state.recommender_for(req.policy)
        except ValueError as exc:  # an unknown policy, bad knobs, or one this model cannot decode with
            raise ClientError(422, f"policy: {exc}") from None
        resolved = state.resolve(req.user_id, req.history)
        if resolved.error:
            raise ClientError(resolved.status, resolved.error, unknown_items=resolved.unknown)
        ranked = await self._decode((state, resolved.history, req.k, req.exclude_seen, req.policy))
        empty = len(resolved.history) == 0
        message = None
        if empty:
            message = "empty history: most popular items"
        elif resolved.unknown:
            message = f"{len(resolved.unknown)} unknown item id(s) ignored"
        return RecommendResponse(items=[Item(item_id=i, score=s) for i, s in ranked], model=rec.name,
                                 model_version=rec.model_version, unknown_items=resolved.unknown,
                                 fallback="popular" if empty else None, message=message)

    async def recommend(self, body: dict) -> tuple[int, dict]:
        """Top-k for one user (``user_id``) or one history; see ``RecommendRequest``."""
        try:
            response = await self._one(self._ready(), RecommendRequest.model_validate(body))
        except ClientError as exc:
            return exc.status, {"error": exc.message, **exc.extra}
        return 200, response.model_dump(mode="json")

    async def recommend_batch(self, body: dict) -> tuple[int, dict]:
        """Many users at once; an entry that cannot be answered gets its own error, the rest still answer."""
        try:
            state = self._ready()
        except ClientError as exc:
            return exc.status, {"error": exc.message}
        requests = BatchRequest.model_validate(body).requests
        results = await asyncio.gather(*(self._one(state, r) for r in requests), return_exceptions=True)
        out: list[RecommendResponse | BatchError] = []
        for r in results:
            if isinstance(r, ClientError):
                out.append(BatchError(status=r.status, error=r.message, unknown_items=r.extra.get("unknown_items", [])))
            elif isinstance(r, BaseException):
                raise r
            else:
                out.append(r)
        return 200, BatchResponse(results=out, model_version=state.model_version).model_dump(mode="json")

    async def readyz(self) -> tuple[int, dict]:
        if self.state is None:
            return 503, {"ready": False, "reason": "model not loaded"}
        return 200, {"ready": True, "model_version": self.state.model_version, "reload_error": self.reload_error}

    async def metadata(self) -> tuple[int, dict]:
        try:
            state = self._ready()
        except ClientError as exc:
            return exc.status, {"error": exc.message}
        return 200, {**state.metadata(), "reload_error": self.reload_error,
                     "max_batch_size": self._decode._get_max_batch_size(), "replica_stats": dict(self.stats)}

    async def request_limits(self) -> errors.Limits | None:
        """What the ingress enforces, from this replica's ``user_config`` (the API key read from its env)."""
        return self.limits


@serve.deployment(name="Ingress", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    """HTTP in front of the model replicas: validation, limits, and retries on a replica's failure."""

    def __init__(self, model: DeploymentHandle) -> None:
        self.model = model
        self._limits = errors.Limits()
        self._limits_at = -1e9
        self.retried = 0
        _INGRESS[:] = [self]

    async def limits(self) -> errors.Limits:
        """The model deployment's current limits, refreshed at most every ``LIMITS_TTL_S`` seconds."""
        now = time.monotonic()
        if now - self._limits_at > LIMITS_TTL_S:
            self._limits_at = now
            try:
                fresh = await self.model.request_limits.remote()
                if fresh is not None:
                    self._limits = fresh
            except Exception as exc:  # noqa: BLE001 - keep the last known limits while replicas restart
                log.warning("serve: could not refresh limits from the model deployment: %s", exc)
        return self._limits

    async def _call(self, method: str, *args: Any) -> JSONResponse:
        """Call a model method; a replica that dies or is unreachable is retried on another one."""
        for attempt, delay in enumerate((*RETRY_DELAYS_S, None)):
            response = getattr(self.model, method).remote(*args)
            try:
                # a call on a replica that was killed can stay pending until the death is noticed: bound it
                status, body = await asyncio.wait_for(response, timeout=CALL_TIMEOUT_S)
                return JSONResponse(status_code=status, content=body)
            except (*REPLICA_FAILURES, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    response.cancel()
                if delay is None:
                    log.error("serve: %s failed on %d replicas in a row: %s", method, attempt + 1, exc)
                    return JSONResponse(status_code=503, content={
                        "error": "no model replica could answer; retry later", "attempts": attempt + 1})
                self.retried += 1
                log.warning("serve: %s: replica failed (%s), retrying in %.2fs", method, type(exc).__name__, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest) -> JSONResponse:
        """Top-k for one user (``user_id``) or one history; see ``RecommendRequest``."""
        return await self._call("recommend", req.model_dump(mode="json"))

    @api.post("/recommend/batch", response_model=BatchResponse)
    async def recommend_batch(self, body: BatchRequest) -> JSONResponse:
        """Many users at once; an entry that cannot be answered gets its own error, the rest still answer."""
        return await self._call("recommend_batch", body.model_dump(mode="json"))

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """Model, code table and catalog are loaded (readiness)."""
        return await self._call("readyz")

    @api.get("/metadata")
    async def metadata(self) -> JSONResponse:
        """Model version, catalog size and code configuration of the version being served."""
        response = await self._call("metadata")
        if response.status_code == 200:
            body = json.loads(response.body)
            body["ingress_retries"] = self.retried
            return JSONResponse(content=body)
        return response


app = Ingress.bind(ModelReplica.bind())
