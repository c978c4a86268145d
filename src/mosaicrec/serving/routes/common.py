"""What every route module shares: the service and the auth dependencies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response

from mosaicrec.serving.auth import RANK, KeyKind
from mosaicrec.serving.service import Service


def service(request: Request) -> Service:
    return request.app.state.service


def require(kind: KeyKind):
    """A dependency admitting keys of ``kind`` or above (``X-API-Key``, or ``Authorization: Bearer``), each
    within its rate limit. ``async``: a plain ``def`` dependency costs a thread hop on every request."""
    async def check(request: Request) -> KeyKind:
        presented = request.headers.get("x-api-key")
        if presented is None:
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                presented = auth[7:].strip()
        found = request.app.state.keys.kind_of(presented)
        if found is None:
            raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
        key, have = found
        if not request.app.state.keys.take(key):
            raise HTTPException(429, "rate limit exceeded for this key")
        if RANK[have] < RANK[kind]:
            raise HTTPException(403, f"this key is {have}-only; this route needs a {kind} key")
        return have
    return Depends(check)


READ, WRITE, ADMIN = require("read"), require("write"), require("admin")


def json_response(payload: Any, status: int = 200) -> Response:
    """orjson writes dataclasses directly: FastAPI's generic encoder and ``dataclasses.asdict`` were the
    slowest steps of a read. The routes still declare their response models, for the OpenAPI document."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")
