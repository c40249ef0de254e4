"""The page's HTTP application: JSON endpoints over one ``RunView`` and the static page (no build step).

Every URL the page uses is relative, so the application also works mounted under a prefix (e.g. beside the
Serve ingress). Ids travel as query parameters, not path segments, so an id with a ``/`` in it still works and
no id is ever read as a path. A bad request is a 4xx JSON ``{"error", "field", "value"}`` naming what was wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from cemg_ray.ui import report
from cemg_ray.ui.data import BadInput, RunView

STATIC = Path(__file__).parent / "static"
MAX_HISTORY = 1000
# the page runs only its own script and style; pictures may come from the catalog's remote URLs
CSP = "default-src 'self'; img-src 'self' data: http: https:; script-src 'self'; style-src 'self'"


class HistoryRequest(BaseModel):
    """A typed history: catalog item ids, oldest first."""

    model_config = ConfigDict(extra="forbid")
    history: list[str] = Field(max_length=MAX_HISTORY)
    k: int = 10
    exclude_seen: bool = True


def _error(status: int, message: str, field: str | None, value: Any) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, "value": value}, status_code=status)


def _safe(value: Any) -> Any:
    """A rejected value echoed back only when it is a plain JSON scalar or list of them."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        return value
    return None


def create_app(view: RunView) -> FastAPI:
    """The application for one opened run (``cemg-ray ui`` serves it with uvicorn)."""
    app = FastAPI(title="CEMG-Ray recommendations page", docs_url=None, redoc_url=None, openapi_url=None)
    cached: dict[str, Any] = {}

    @app.exception_handler(BadInput)
    async def _bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field, _safe(exc.value))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "body")]
        field = ".".join(loc) or "body"
        return _error(422, f"{field}: {first.get('msg', 'invalid')}", field, _safe(first.get("input")))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/run")
    def run_summary() -> dict[str, Any]:
        return view.summary()

    @app.get("/api/users")
    def users(q: str = "", offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return view.users(q, offset, limit)

    @app.get("/api/recommendations")
    def user_recommendations(user_id: str, k: int = 10, exclude_seen: bool = True) -> dict[str, Any]:
        return view.for_user(user_id, k, exclude_seen)

    @app.post("/api/recommendations")
    def history_recommendations(body: HistoryRequest) -> dict[str, Any]:
        return view.for_history(body.history, body.k, body.exclude_seen)

    @app.get("/api/items")
    def items(q: str = "", offset: int = 0, limit: int = 50) -> dict[str, Any]:
        return view.items(q, offset, limit)

    @app.get("/api/items/info")
    def item(item_id: str) -> dict[str, Any]:
        return view.item(item_id)

    @app.get("/api/items/image")
    def image(item_id: str) -> Response:
        found = view.image(item_id)
        if found is None:
            return _error(404, f"item_id {item_id!r} has no picture this page serves (none in the catalog, a remote "
                               "URL, or a file outside the catalog's image folder)", "item_id", item_id)
        data, media = found
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/report")
    def run_report() -> dict[str, Any]:
        if "report" not in cached:  # a run's artifacts do not change while it is open
            cached["report"] = report.build(view.store, view.code_usage())
        return cached["report"]

    @app.get("/api/report/figure")
    def figure(name: str) -> Response:
        rel = report.FIGURES.get(name)
        if rel is None or not view.store.exists(rel):
            return _error(404, f"name {name!r} is not a figure of this run (known: {', '.join(report.FIGURES)})",
                          "name", name)
        return Response(view.store.read_bytes(rel), media_type="image/png")

    return app
