"""``GET /users/{user_id}/recommendations``: a user's list (read key), the hottest route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mosaicrec.errors import MosaicError
from mosaicrec.ranking.pipeline import Request as ListRequest
from mosaicrec.serving.limits import HEAVY_COST
from mosaicrec.serving.routes.common import Params, authorize, json_response, query_doc, service
from mosaicrec.serving.schemas import RecommendationsOut

router = APIRouter(tags=["recommendations"])

DOC = query_doc(
    ("user_id", "path", {"type": "string", "minLength": 1, "maxLength": 256}, "external user id"),
    ("k", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "list length"),
    ("exclude", "query", {"type": "string", "maxLength": 10000}, "comma-separated item ids to leave out"),
    ("diversity", "query", {"type": "number", "minimum": 0, "maximum": 1}, "MMR re-ranking at lambda = 1 - diversity"),
    ("filter", "query", {"type": "array", "items": {"type": "string"}, "maxItems": 16}, "attribute:value, repeatable"),
    ("include_seen", "query", {"type": "boolean", "default": False}, "also items the user liked (never disliked ones)"),
    ("scenario", "query", {"type": "string", "maxLength": 256},
     "the request's context (e.g. the app surface) for a context model; a value the model never saw gets its "
     "shared scores (scenario_known: false)"),
    ("reasons", "query", {"type": "string", "enum": ["content", "model", "none"], "default": "content"},
     "content: cite the liked item closest in content; model: the liked item whose removal lowers the item's "
     "score most, by the model itself; none: no reasons (a fifth less work per list)"))


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsOut, openapi_extra=DOC,
            responses={401: {"description": "no or unknown key"}, 422: {"description": "a parameter out of bounds"}})
async def recommendations(request: Request) -> Response:
    """Top-k items for a user, with explanations. A user with no likes (new, or erased) gets the popular
    items with ``cold_start: true``. Items the user disliked never appear. Needs a read key, which is
    charged the list's cost (a top-10 costs 1; longer, diverse or model-explained lists more: see the API
    guide). Costly lists run beside the server's loop, a few at a time; when those are all busy the answer
    is 429 with ``Retry-After``."""
    p = Params(request)
    user_id, k = p.id("user_id"), p.int("k", 10, 1, 1_000)
    exclude, diversity = p.str("exclude", 10_000), p.float("diversity", 0.0, 1.0)
    filters = {}
    for f in p.list("filter", 16, 1_000):
        key, sep, value = f.partition(":")
        if not sep or not key or not value:
            raise MosaicError(f"filter expects attribute:value (both non-empty), got {f!r}")
        filters[key] = value
    reasons = p.str("reasons", 16) or "content"
    if reasons not in ("content", "model", "none"):
        raise MosaicError(f"reasons must be content, model or none, not {reasons!r}")
    ask = ListRequest(user_id, k, tuple(exclude.split(",")) if exclude else (), diversity, filters,
                      not p.bool("include_seen"), p.str("scenario", 256), None, reasons)
    authorize(request, "read", ask.cost)
    svc = service(request)
    if ask.cost > HEAVY_COST:
        return json_response(await request.app.state.heavy.run(svc.run, ask))
    return json_response(svc.run(ask))
