"""The HTTP API over :class:`~mosaicrec.serving.service.Service` (FastAPI).

Routes live in :mod:`mosaicrec.serving.routes`, one module per resource, each with the key kind it needs
(:mod:`mosaicrec.serving.auth`) and a typed response (so ``/openapi.json`` documents every route). This
module wires them with two pieces of plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` spawns a
task and a stream per request, which showed in profiles under load):

* the **body limit** counts the bytes actually received, chunked bodies included (``Content-Length`` is
  only checked first, to refuse early): past ``max_body_bytes`` (``max_upload_bytes`` for uploads) the
  request gets a 413 and the rest of its body is never read;
* **metrics**: Prometheus request counts and latency histograms per route template.

Library errors become 4xx responses with one clear message: unknown user or item → 404, an existing id or
an erased user → 409, media over the limit → 413, media or a model folder that cannot be used → 422,
content still being encoded → 503, what the model cannot do → 501, anything else the caller can fix → 400.
An unexpected error is a 500 that says only that (the details go to the server's log).
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse

from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.serving.auth import KeyKind, KeyRing
from mosaicrec.serving.limits import Busy, HeavyLane, retry_header
from mosaicrec.serving.media import MediaRejected, MediaTooLarge
from mosaicrec.serving.routes import admin, events, items, ops, recommendations, ui, users
from mosaicrec.serving.routes.common import READ, ParamError
from mosaicrec.serving.service import Conflict, ContentNotReady, ModelRejected, Service

log = logging.getLogger("mosaicrec.serving")
UPLOAD_PATH = "/items/upload"


def _status_of(exc: MosaicError) -> int:
    if isinstance(exc, (UnknownUserError, UnknownItemError)):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, MediaTooLarge):
        return 413
    if isinstance(exc, (MediaRejected, ModelRejected, ParamError)):
        return 422
    if isinstance(exc, ContentNotReady):
        return 503
    if isinstance(exc, Busy):
        return 429
    if isinstance(exc, NotSupportedError):
        return 501
    return 400


def create_app(service: Service, keys: dict[str, KeyKind], *, rate_limit: float = 1_000.0,
               burst: float = 2_000.0, max_body_bytes: int = 2_000_000, max_upload_bytes: int | None = None,
               model_dir: str | None = None, jobs=None, public_docs: bool = False,
               report_dir: str | None = None, served_by: str | None = None) -> FastAPI:
    """The API. ``keys`` maps API key → ``read``, ``write`` or ``admin``; it must not be empty.
    ``model_dir`` (relative to the service's model root) is what ``POST /admin/reload`` loads by default;
    ``jobs`` runs retraining (:class:`~mosaicrec.app.jobs.RetrainJobs`). ``public_docs`` serves
    ``/docs`` and ``/openapi.json`` without a key. ``report_dir``, an evaluation's output folder, is shown
    on the web page (``/ui``). ``served_by`` names the replica in each response's ``X-Served-By``
    header (replicated serving)."""
    from prometheus_client import CollectorRegistry

    ring = KeyRing(keys, rate_limit, burst)
    # one upload may hold an image, a clip and a video
    max_upload_bytes = max_upload_bytes or service.media.max_bytes * 2 + service.media.max_video_bytes + 200_000

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.heavy.close()
        service.close()

    app = FastAPI(title="mosaicrec", version="2", description=__doc__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.keys, app.state.jobs, app.state.model_dir = service, ring, jobs, model_dir
    app.state.heavy = HeavyLane()
    app.state.registry = CollectorRegistry()  # per app, so two apps in one process do not share counts
    app.add_middleware(Guard, limits=(max_body_bytes, max_upload_bytes), metrics=_Metrics(app.state.registry),
                       served_by=served_by)
    ui.mount(app, report_dir)
    _handle_errors(app)
    for module in (recommendations, items, events, users, admin, ops, ui):
        # the routes themselves, not the router: an included router is matched as a nested router on every
        # request in this FastAPI, which cost 0.2 ms per request (doubling /health's cost)
        app.router.routes.extend(module.router.routes)
    _docs(app, public_docs)
    return app


class _Metrics:
    """Prometheus request counts and latency histograms per route template (bounded labels)."""

    def __init__(self, registry) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("mosaicrec_requests", "HTTP requests", ["route", "method", "status"],
                                registry=registry)
        self.latency = Histogram("mosaicrec_request_seconds", "request latency", ["route", "method"],
                                 registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

    def observe(self, scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        name = route.path if route is not None else "unmatched"  # templates, not ids: bounded labels
        self.requests.labels(name, scope["method"], str(status)).inc()
        self.latency.labels(name, scope["method"]).observe(seconds)


class Guard:
    """Plain ASGI middleware: the body limit (bytes received) and metrics; see the module docstring."""

    def __init__(self, app, limits: tuple[int, int], metrics: _Metrics, served_by: str | None = None) -> None:
        self.app, (self.max_body, self.max_upload), self.metrics = app, limits, metrics
        self.served_by = [(b"x-served-by", served_by.encode())] if served_by else []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]
        limit = self.max_upload if scope.get("path") == UPLOAD_PATH else self.max_body
        refused = [False]

        async def refuse(size: str) -> None:
            refused[0] = True
            status[0] = 413
            await JSONResponse({"detail": f"request body of {size} bytes exceeds the limit of {limit:,}"},
                               413)(scope, _no_body, send)

        size = dict(scope.get("headers") or []).get(b"content-length", b"")
        if size.isdigit() and int(size) > limit:
            await refuse(f"{int(size):,}")
        else:
            received = [0]

            async def counted_receive():
                if refused[0]:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    received[0] += len(message.get("body", b""))
                    if received[0] > limit:
                        await refuse(f"more than {limit:,}")
                        return {"type": "http.disconnect"}
                return message

            async def guarded_send(message) -> None:
                if refused[0]:
                    return  # the 413 is the answer; the app's own reply to a cut body is dropped
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    if self.served_by:
                        message = {**message, "headers": [*message.get("headers", ()), *self.served_by]}
                await send(message)

            try:
                await self.app(scope, counted_receive, guarded_send)
            except Exception:
                if not refused[0]:
                    raise
        self.metrics.observe(scope, status[0], time.perf_counter() - t0)


def _handle_errors(app: FastAPI) -> None:
    """Library errors as 4xx with their message; a request out of bounds as 422 naming the field; anything
    else as a 500 that says only that (the details go to the server's log)."""

    @app.exception_handler(MosaicError)
    async def library_error(request: Request, exc: MosaicError):
        code = _status_of(exc)
        headers = (retry_header(10) if code == 503 else retry_header(exc.retry_after) if isinstance(exc, Busy)
                   else None)
        return JSONResponse({"detail": str(exc)}, code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        # loc, msg and type only: the input itself may be NaN (no JSON for it) or large, and is the client's
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
                  for e in exc.errors()[:20]]
        return JSONResponse({"detail": f"{where}: {first.get('msg')}", "errors": errors}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, 500)


def _docs(app: FastAPI, public: bool) -> None:
    """``/openapi.json`` and ``/docs``, behind a read key unless ``public``."""
    guard = [] if public else [READ]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="mosaicrec API")


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}
