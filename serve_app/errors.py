"""HTTP error handling for the ingress: every client mistake is a 4xx JSON body with a message.

- validation errors (wrong types, unknown fields, malformed JSON) -> 422 listing each field;
- bodies over the configured size -> 413, checked on the declared length and on the bytes read;
- ``ClientError`` raised by a handler -> its status and message;
- anything unexpected -> 500 with a generic message (logged; never reached by client input).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class BodyLimit:
    """Pure ASGI middleware: 413 for bodies over ``limit()`` bytes, whether declared or streamed (chunked).

    The body is read (up to the limit) before the app sees it, then replayed, so oversized
    requests never reach JSON parsing.
    """

    def __init__(self, app, limit) -> None:  # noqa: ANN001 - ASGI app, () -> int
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._reject(scope, receive, send, limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self._reject(scope, receive, send, limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    @staticmethod
    async def _reject(scope, receive, send, limit: int) -> None:  # noqa: ANN001 - ASGI
        response = JSONResponse(status_code=413, content={"error": f"request body over {limit} bytes"})
        await response(scope, receive, send)


def install(api: FastAPI, limit) -> None:  # noqa: ANN001 - () -> int
    """Register the handlers and the body-size middleware on ``api``."""
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(ClientError, _client_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
    api.add_middleware(BodyLimit, limit=limit)
