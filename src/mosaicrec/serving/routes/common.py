"""What every route module shares: the service and the auth dependencies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response

from mosaicrec.errors import MosaicError
from mosaicrec.serving.auth import RANK, KeyKind
from mosaicrec.serving.limits import retry_header
from mosaicrec.serving.service import Service


def service(request: Request) -> Service:
    return request.app.state.service


def authorize(request: Request, kind: KeyKind, cost: float = 1.0) -> KeyKind:
    """Admit keys of ``kind`` or above (``X-API-Key``, or ``Authorization: Bearer``), each charged ``cost``
    against its rate limit; else 401, 403 or 429 (with ``Retry-After``). A client address that presented
    too many wrong keys gets 429 for any key until its throttle refills: the key is not even looked at,
    so a guess made then tells nothing (behind a proxy, the address is taken from ``X-Forwarded-For``, which
    uvicorn trusts from 127.0.0.1, or from ``$FORWARDED_ALLOW_IPS``)."""
    ring = request.app.state.keys
    presented = request.headers.get("x-api-key")
    if presented is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
    if not presented:
        raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
    client = request.client.host if request.client is not None else "-"
    blocked = ring.failures.peek(client)
    if blocked:
        raise HTTPException(429, "too many wrong API keys from this address", headers=retry_header(blocked))
    found = ring.kind_of(presented)
    if found is None:
        ring.failures.charge(client)
        raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
    key, have = found
    wait = ring.take(key, cost)
    if wait:
        raise HTTPException(429, f"rate limit exceeded for this key (this request costs {cost:g} units)",
                            headers=retry_header(wait))
    if RANK[have] < RANK[kind]:
        raise HTTPException(403, f"this key is {have}-only; this route needs a {kind} key")
    return have


def require(kind: KeyKind):
    """:func:`authorize` as a dependency. ``async``: a plain ``def`` dependency costs a thread hop."""
    async def check(request: Request) -> KeyKind:
        return authorize(request, kind)
    return Depends(check)


READ, WRITE, ADMIN = require("read"), require("write"), require("admin")


class ParamError(MosaicError):
    """A query or path parameter out of its bounds (the API answers 422 naming it)."""


class Params:
    """Query and path parameters of the hottest read routes, validated by hand.

    FastAPI's per-parameter resolution cost ~0.4 ms per request on the recommendations route, about as much
    as the recommendation itself; these routes take the raw request and check each value here, with the
    same bounds and a 422 naming the parameter. Their parameters are still documented in the OpenAPI
    description (``openapi_extra``)."""

    def __init__(self, request: Request) -> None:
        self.q = request.query_params
        self.path = request.path_params

    def id(self, name: str) -> str:
        value = self.path[name]
        if not 1 <= len(value) <= 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ParamError(f"path.{name}: must be 1-256 printable characters")
        return value

    def int(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.q.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ParamError(f"query.{name}: expected an integer, got {raw[:40]!r}") from None
        if not lo <= value <= hi:
            raise ParamError(f"query.{name}: must be between {lo} and {hi}, got {value}")
        return value

    def float(self, name: str, lo: float, hi: float) -> float | None:
        raw = self.q.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise ParamError(f"query.{name}: expected a number, got {raw[:40]!r}") from None
        if not lo <= value <= hi:  # NaN fails this too
            raise ParamError(f"query.{name}: must be between {lo:g} and {hi:g}, got {raw[:40]!r}")
        return value

    def str(self, name: str, max_length: int) -> str | None:
        value = self.q.get(name)
        if value is not None and len(value) > max_length:
            raise ParamError(f"query.{name}: at most {max_length} characters")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self.q.get(name)
        if raw is None:
            return default
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ParamError(f"query.{name}: expected true or false, got {raw[:40]!r}")

    def list(self, name: str, max_items: int, max_length: int) -> list[str]:
        values = self.q.getlist(name)
        if len(values) > max_items or any(len(v) > max_length for v in values):
            raise ParamError(f"query.{name}: at most {max_items} values of {max_length} characters")
        return values


def query_doc(*params: tuple[str, str, dict, str]) -> dict:
    """``openapi_extra`` documenting hand-validated parameters: (name, where, schema, description)."""
    return {"parameters": [{"name": n, "in": where, "required": where == "path", "schema": schema,
                            "description": desc} for n, where, schema, desc in params]}


def json_response(payload: Any, status: int = 200) -> Response:
    """orjson writes dataclasses directly: FastAPI's generic encoder and ``dataclasses.asdict`` were the
    slowest steps of a read. The routes still declare their response models, for the OpenAPI document."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")
