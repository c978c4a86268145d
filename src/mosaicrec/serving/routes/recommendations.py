"""``GET /users/{user_id}/recommendations``: a user's list (read key)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mosaicrec.errors import MosaicError
from mosaicrec.serving.routes.common import READ, json_response, service
from mosaicrec.serving.schemas import Id, RecommendationsOut

router = APIRouter(tags=["recommendations"])


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut, dependencies=[READ])
async def recommendations(request: Request, user_id: Id, k: int = Query(10, ge=1, le=1_000),
                          exclude: str | None = Query(None, max_length=10_000, description="comma-separated item ids"),
                          diversity: float | None = Query(None, ge=0.0, le=1.0),
                          filter: list[str] | None = Query(None, max_length=16,
                                                           description="attribute:value, repeatable"),
                          include_seen: bool = False,
                          scenario: str | None = Query(None, max_length=256,
                                                       description="the request's context (e.g. the app surface) "
                                                       "for a context model; a value the model never saw gets its "
                                                       "shared scores (scenario_known: false)")) -> Response:
    """Top-k items for a user, with explanations. A user with no likes (new, or erased) gets the popular
    items with ``cold_start: true``. Items the user disliked never appear."""
    filters = {}
    for f in filter or []:
        key, sep, value = f.partition(":")
        if not sep or not key:
            raise MosaicError(f"filter expects attribute:value, got {f!r}")
        filters[key] = value
    result = service(request).recommend(user_id, k, exclude=exclude.split(",") if exclude else None,
                                        diversity=diversity, filters=filters, exclude_seen=not include_seen,
                                        scenario=scenario)
    return json_response(result)
