"""The HTTP API over :class:`~mosaicrec.serving.service.Service` (FastAPI; OpenAPI docs at ``/docs``).

Read handlers are ``async``: they are short CPU-bound calls serialised by the service lock anyway, so
running them on the event loop saves a thread hop per request (measured: the largest cost after JSON).
Writes, which wait on DuckDB, stay in the thread pool.

Every request but ``/health`` carries an API key in ``X-API-Key``. A ``read`` key may call the GET and search
endpoints; a ``write`` key also adds items and events and erases users. Each key has a token-bucket rate
limit. Bodies over ``max_body_bytes`` are refused with 413 before they are parsed. Library errors become
4xx responses with one clear message: unknown user or item → 404, anything else the caller can fix → 400.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.serving.service import MediaRejected, Service

KeyKind = Literal["read", "write"]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    timestamp: int | None = Field(None, ge=0, description="Unix seconds (default: now)")
    event_type: str = Field("interaction", max_length=64)
    weight: float = 1.0
    context: dict[str, str] = Field(default_factory=dict)


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=256)
    title: str | None = Field(None, max_length=2_000)
    texts: dict[str, str] = Field(default_factory=dict)
    image: str | None = Field(None, description="path or file:// URI readable by the server")
    audio: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1, max_length=1_000)


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2_000)
    k: int = Field(10, ge=1, le=1_000)
    user_id: str | None = None


class _Bucket:
    """Token bucket: ``rate`` requests per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str | None = Field(None, description="folder written by `mosaicrec train` (default: the one "
                                  "the server started with)")


def create_app(service: Service, keys: dict[str, KeyKind], *, rate_limit: float = 1_000.0,
               burst: float = 2_000.0, max_body_bytes: int = 2_000_000, model_dir: str | None = None) -> FastAPI:
    """The API. ``keys`` maps API key → ``read`` or ``write``; it must not be empty. ``model_dir`` is where
    ``POST /admin/reload`` reads a retrained model from by default."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    if not keys:
        raise MosaicError("serving needs at least one API key")
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="mosaicrec", version="1", description=__doc__, lifespan=lifespan)
    buckets = {k: _Bucket(rate_limit, burst) for k in keys}
    registry = CollectorRegistry()  # per app, so two apps in one process do not share counts
    requests = Counter("mosaicrec_requests", "HTTP requests", ["route", "method", "status"], registry=registry)
    latency = Histogram("mosaicrec_request_seconds", "request latency", ["route", "method"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

    class Guard:
        """Body-size limit and Prometheus metrics as plain ASGI middleware: Starlette's
        ``BaseHTTPMiddleware`` spawns a task and a stream per request, which showed in profiles under load
        (the end-to-end benchmark moved within its noise)."""

        def __init__(self, app) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            t0 = time.perf_counter()
            status = [500]
            size = dict(scope.get("headers") or []).get(b"content-length", b"")
            if size.isdigit() and int(size) > max_body_bytes:
                status[0] = 413
                await JSONResponse({"detail": f"request body of {int(size)} bytes exceeds {max_body_bytes}"},
                                   413)(scope, receive, send)
            else:
                async def send_status(message) -> None:
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)
                await self.app(scope, receive, send_status)
            route = scope.get("route")
            name = route.path if route is not None else "unmatched"  # templates, not ids: bounded labels
            requests.labels(name, scope["method"], str(status[0])).inc()
            latency.labels(name, scope["method"]).observe(time.perf_counter() - t0)

    app.add_middleware(Guard)

    @app.exception_handler(MosaicError)
    async def library_error(request: Request, exc: MosaicError):
        status = 404 if isinstance(exc, (UnknownUserError, UnknownItemError)) else \
            (501 if isinstance(exc, NotSupportedError) else 422 if isinstance(exc, MediaRejected) else 400)
        return JSONResponse({"detail": str(exc).strip("'\"")}, status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"detail": f"{where}: {first.get('msg')}", "errors": json.loads(
            json.dumps(exc.errors(), default=str))}, 422)

    # async: a plain ``def`` dependency is run in the thread pool, a thread hop on every request
    async def key_of(x_api_key: str | None = Header(None)) -> KeyKind:
        if x_api_key is None or x_api_key not in keys:
            raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
        if not buckets[x_api_key].take():
            raise HTTPException(429, "rate limit exceeded for this key")
        return keys[x_api_key]

    async def writer(kind: KeyKind = Depends(key_of)) -> KeyKind:
        if kind != "write":
            raise HTTPException(403, "this key is read-only")
        return kind

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **service.health()}

    @app.get("/ready")
    async def ready() -> dict[str, Any]:
        """Ready once the model, catalog and index are loaded: the service object exists only then."""
        return {"ready": True, "items": len(service.item_ids)}

    @app.get("/metrics")
    async def metrics():
        from fastapi.responses import Response

        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", dependencies=[Depends(writer)])
    def reload(body: ReloadIn | None = None) -> dict[str, Any]:
        from pathlib import Path

        from mosaicrec.models import load_model

        folder = (body.model_dir if body and body.model_dir else None) or model_dir
        if folder is None:
            raise MosaicError("no model folder: pass model_dir")
        model = load_model(Path(folder))
        service.swap_model(model)
        return {"model": model.name, "folder": str(folder), "reloads": service.reloads}

    @app.get("/users/{user_id}/recommendations", dependencies=[Depends(key_of)])
    async def recommendations(user_id: str, k: int = Query(10, ge=1, le=1_000),
                        exclude: str | None = Query(None, description="comma-separated item ids"),
                        diversity: float | None = Query(None, ge=0.0, le=1.0),
                        filter: list[str] | None = Query(None, description="attribute:value, repeatable"),
                        include_seen: bool = False,
                        scenario: str | None = Query(None, description="the request's context (e.g. the app "
                                                     "surface) for a context model; a value the model never "
                                                     "saw gets its shared scores (scenario_known: false)")
                        ) -> Response:
        filters = {}
        for f in filter or []:
            key, sep, value = f.partition(":")
            if not sep or not key:
                raise MosaicError(f"filter expects attribute:value, got {f!r}")
            filters[key] = value
        recs = service.recommend(user_id, k, exclude=exclude.split(",") if exclude else None,
                                 diversity=diversity, filters=filters, exclude_seen=not include_seen,
                                 scenario=scenario)
        if scenario is None:
            return _json({"user_id": user_id, "items": recs})
        return _json({"user_id": user_id, "scenario": scenario,
                      "scenario_known": service.check_scenario(scenario), "items": recs})

    @app.get("/items/{item_id}/similar", dependencies=[Depends(key_of)])
    async def similar(item_id: str, k: int = Query(10, ge=1, le=1_000), modality: str | None = None) -> Response:
        return _json({"item_id": item_id, "items": service.similar(item_id, k, modality)})

    @app.post("/search", dependencies=[Depends(key_of)])
    def search(body: SearchIn) -> Response:
        return _json({"query": body.query, "items": service.search(body.query, body.k, body.user_id)})

    @app.post("/items", dependencies=[Depends(writer)], status_code=201)
    def add_items(body: ItemsIn) -> dict[str, Any]:
        frame = pd.DataFrame([{**i.model_dump(), "title": i.title or i.item_id} for i in body.items])
        return {"items": service.add_items(frame)}

    @app.post("/events", dependencies=[Depends(writer)], status_code=201)
    def add_events(body: EventsIn) -> dict[str, Any]:
        now = int(time.time())
        frame = pd.DataFrame([{"user_id": e.user_id, "item_id": e.item_id,
                               "timestamp": e.timestamp if e.timestamp is not None else now,
                               "event_type": e.event_type, "weight": e.weight,
                               "context": json.dumps(e.context, sort_keys=True)} for e in body.events])
        return {"received": len(frame), "added": service.add_events(frame)}

    @app.delete("/users/{user_id}", dependencies=[Depends(writer)])
    def delete_user(user_id: str) -> dict[str, Any]:
        return {"user_id": user_id, "events_erased": service.delete_user(user_id)}

    return app


def _json(payload: dict[str, Any]) -> Response:
    """orjson writes the dataclasses directly: FastAPI's generic encoder and ``dataclasses.asdict`` were
    the slowest steps of a read."""
    return Response(orjson.dumps(payload), media_type="application/json")
