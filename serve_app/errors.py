"""HTTP error handling for the ingress: every client mistake is a 4xx JSON body with a message.

- validation errors (wrong types, unknown fields, malformed JSON) -> 422 listing each field;
- bodies over the configured size -> 413, checked on the declared length and on the bytes read, after the
  body is read and discarded (up to ``drain_cap_bytes`` and ``drain_timeout_s``) so that a client that writes its
  whole body before reading gets the answer, not a connection reset;
- a body that does not arrive within ``read_timeout_s`` -> 408; headers over ``max_header_bytes`` -> 431;
- bodies that are not UTF-8 or JSON nested too deeply -> 422 (FastAPI alone answers a bare 400);
- with an API key configured, requests without it -> 401 (the probes stay open);
- ``ClientError`` raised by a handler -> its status and message;
- anything unexpected -> 500 with a generic message (logged; never reached by client input).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("cemg_ray.serve")


class ClientError(Exception):
    """A request the service understood but cannot answer (unknown user, k out of range, ...)."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = []
    ctype = request.headers.get("content-type", "")
    for err in exc.errors():
        msg, where = err["msg"].removeprefix("Value error, "), _field(err["loc"])
        if err["type"] == "json_invalid":
            msg, where = f"body is not valid JSON: {err.get('ctx', {}).get('error', msg)}", "body"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif where == "body" and "json" not in ctype.lower():
            msg = f"expected a JSON object with content-type: application/json (got content-type {ctype!r})"
        details.append({"field": where, "message": msg})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return JSONResponse(status_code=422, content={"error": f"invalid request: {summary}", "details": details})


async def _client_error(_request: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"error": exc.message, **exc.extra})


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("serve: unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(status_code=500, content={"error": f"internal error ({type(exc).__name__}); see server logs"})


@dataclass
class Limits:
    """What the ingress enforces before a handler runs; the deployment updates it on every ``user_config``."""

    max_body_bytes: int = 1_000_000
    max_header_bytes: int = 16_384
    read_timeout_s: float = 10.0
    api_key: str | None = None  # the key's value (read from the environment), never logged
    # An over-limit body is read and discarded up to this many bytes and seconds, then answered 413. Why: the server
    # closes a connection the client asked to close (``connection: close``) as soon as the answer is sent, and a
    # close with unread bytes is a reset, which a client still writing its body sees instead of the 413 (a 16.9 MB
    # body met the former 16 MB bound). A body declared larger than the bound is answered at once: the client sees
    # the 413 if it reads while writing or sent ``expect: 100-continue``, else a reset.
    drain_cap_bytes: int = 128_000_000
    drain_timeout_s: float = 30.0
    open_paths: tuple[str, ...] = ("/healthz", "/readyz", "/docs", "/openapi.json")


def _json(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, **extra})


def _body_problem(body: bytes, content_type: str) -> JSONResponse | None:
    """422 for what FastAPI would answer with a bare 400: bytes that are not UTF-8, JSON nested too deeply."""
    if not body or "json" not in content_type.lower():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"body is not UTF-8 (byte 0x{body[exc.start]:02x} at position {exc.start})"
        return _json(422, f"invalid request: body: {msg}", details=[{"field": "body", "message": msg}])
    try:
        json.loads(text)
    except RecursionError:
        msg = "JSON nested too deeply"
        return _json(422, f"invalid request: body: {msg}", details=[{"field": "body", "message": msg}])
    except ValueError:
        return None  # malformed JSON: FastAPI's own 422 names the position
    return None


class RequestGuard:
    """Pure ASGI middleware in front of the app: API key, header size, body size and a read timeout.

    The body is read (up to the limit, each chunk within ``read_timeout_s``) before the app sees it and
    then replayed, so oversized, stalled or undecodable requests never reach JSON parsing. A body over
    the limit is drained (up to ``drain_cap_bytes`` and ``drain_timeout_s``) before the 413, so a client that
    writes its whole body first reads the answer instead of a connection reset.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], Limits]) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lim = self.limits()
        if inspect.isawaitable(lim):  # the serving ingress asks the model deployment (cached)
            lim = await lim
        headers = scope.get("headers") or []
        header_bytes = sum(len(k) + len(v) for k, v in headers)
        if header_bytes > lim.max_header_bytes:
            return await _json(431, f"request headers are {header_bytes} bytes, over the limit of "
                                    f"{lim.max_header_bytes}")(scope, receive, send)
        hmap = {k.lower(): v for k, v in headers}
        if lim.api_key and scope.get("path", "") not in lim.open_paths and not _authorised(hmap, lim.api_key):
            return await _json(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                                    "'X-API-Key: <key>'")(scope, receive, send)
        declared = hmap.get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await _json(400, "content-length is not a number")(scope, receive, send)
        if declared is not None and int(declared) > lim.max_body_bytes:
            if int(declared) <= lim.drain_cap_bytes:
                await self._drain(receive, lim)
            return await self._too_large(scope, receive, send, lim)
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), timeout=lim.read_timeout_s)
            except TimeoutError:
                return await _json(408, f"request body not received within {lim.read_timeout_s:g} s")(
                    scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > lim.max_body_bytes:
                if more:
                    await self._drain(receive, lim, size)
                return await self._too_large(scope, receive, send, lim)
            chunks.append(chunk)
        body, sent = b"".join(chunks), False
        problem = _body_problem(body, hmap.get(b"content-type", b"").decode("latin-1"))
        if problem is not None:
            return await problem(scope, receive, send)

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive, lim: Limits, read: int = 0) -> None:
        """Read and discard the rest of an over-limit body, within ``drain_cap_bytes`` and ``drain_timeout_s``
        (each chunk within ``read_timeout_s``), so that the 413 that follows is not cut off by a reset."""
        deadline, more = time.monotonic() + lim.drain_timeout_s, True
        while more and read <= lim.drain_cap_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), timeout=min(lim.read_timeout_s, left))
            except TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            more = message.get("more_body", False)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, lim: Limits) -> None:
        await _json(413, f"request body over {lim.max_body_bytes} bytes")(scope, receive, send)


def _authorised(headers: dict[bytes, bytes], key: str) -> bool:
    sent = headers.get(b"x-api-key", b"")
    auth = headers.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        sent = auth[7:].strip()
    return bool(sent) and hmac.compare_digest(sent, key.encode())


def install(api: FastAPI, limits: Callable[[], Limits | Awaitable[Limits]]) -> None:
    """Register the handlers and the request guard (key, headers, body, timeout) on ``api``."""
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(ClientError, _client_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
    api.add_middleware(RequestGuard, limits=limits)
