"""Liveness, readiness (no key), status and metrics (read key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mosaicrec.serving.routes.common import READ, json_response, service
from mosaicrec.serving.schemas import HealthOut, ReadyOut, StatusOut

router = APIRouter(tags=["operations"])
_OK = b'{"status":"ok"}'


@router.get("/health", response_model=HealthOut)
async def health() -> Response:
    """Liveness, for probes without a key: says nothing but ``ok``."""
    return Response(_OK, media_type="application/json")


@router.get("/ready", response_model=ReadyOut)
async def ready(request: Request) -> dict[str, Any]:
    """Readiness, for probes without a key: true once the model, catalog and indexes are loaded."""
    return {"ready": getattr(request.app.state, "service", None) is not None}


@router.get("/status", response_model=StatusOut, dependencies=[READ])
async def status(request: Request) -> Response:
    """Model, retrieval, counts and content state."""
    return json_response(service(request).health())


@router.get("/metrics", dependencies=[READ])
async def metrics(request: Request) -> Response:
    """Prometheus request counts and latency histograms per route template."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
