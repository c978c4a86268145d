"""The web page (``GET /ui``) and the reads it needs beside the API (read key).

The page itself is a server-rendered template with one small script and stylesheet, and holds no data: it
is served without a key. The person using it pastes an API key, which the script keeps for the tab
(``sessionStorage``) and sends as ``X-API-Key`` on every call, media included (fetched into ``blob:`` URLs),
so no cookie exists for another site to ride on. The page's writes (likes, uploads, model switches) go
through the API's own routes with the key's own rights. The script writes every value with
``textContent``, and a strict Content-Security-Policy allows only this origin's script and style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from mosaicrec import __version__
from mosaicrec.serving.routes.common import Params, authorize, json_response, service

router = APIRouter(tags=["web page"])
ASSETS = Path(__file__).resolve().parent.parent / "ui"
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _browse(request: Request):
    return request.app.state.browse


def _template():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(ASSETS), autoescape=select_autoescape(["html"]))
    return env.get_template("index.html")


@router.get("/ui", include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    """The page (no key: it holds no data until a key is entered)."""
    return HTMLResponse(request.app.state.ui_page, headers=PAGE_HEADERS)


@router.get("/ui/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:  # a fixed list: no path is ever built from the client's name
        return json_response({"detail": "not found"}, 404)
    return FileResponse(ASSETS / name, media_type=media_type, headers=PAGE_HEADERS)


@router.get("/ui/api/meta")
async def meta(request: Request) -> Response:
    """What the page's controls offer: the key's kind, the model and the models it may switch to, the
    scenarios the model knows, filterable attributes, the like/dislike weights, whether a report exists."""
    kind = authorize(request, "read")
    svc, browse = service(request), _browse(request)
    model = svc.model
    threshold = svc.threshold
    like = float(threshold) if threshold is not None else 1.0
    health = svc.health()
    return json_response({
        "key": kind, "model": model.name, "model_dir": request.app.state.model_dir, "models": browse.models(),
        "scenarios": [str(c) for c in getattr(model, "contexts_", [])][:200] if model.uses_context else [],
        "filters": browse.filters(), "like_weight": like, "dislike_weight": min(0.0, like - 1.0),
        "content": health["content"], "content_status": health["content_status"],
        "bandit": health["bandit"] is not None, "report": browse.report_dir is not None,
        "items": health["items"], "users": health["users"]})


@router.get("/ui/api/users")
async def users(request: Request) -> Response:
    """Users whose id starts with ``q`` (the first ``limit`` in id order)."""
    authorize(request, "read")
    p = Params(request)
    return json_response({"users": _browse(request).find_users(p.str("q", 256) or "", p.int("limit", 20, 1, 100))})


@router.get("/ui/api/users/{user_id}/history")
async def history(request: Request) -> Response:
    """The user's latest events (likes and dislikes), newest first, as cards."""
    authorize(request, "read")
    p = Params(request)
    return json_response(_browse(request).history(p.id("user_id"), p.int("k", 20, 1, 200)))


@router.get("/ui/api/cards")
async def cards(request: Request) -> Response:
    """Cards (title, attributes, a short text, media present) of up to 200 items (repeat ``id``)."""
    authorize(request, "read")
    ids = Params(request).list("id", 200, 256)
    return json_response({"cards": list(_browse(request).cards(ids).values())})


@router.get("/ui/api/report")
async def report(request: Request) -> Response:
    """The evaluation report the server was started with (``serve --report``): rows and plot names."""
    authorize(request, "read")
    found = _browse(request).report()
    if found is None:
        raise HTTPException(404, "this server was started without an evaluation report (serve --report FOLDER)")
    return json_response(found)


@router.get("/ui/api/report/{name}")
async def report_plot(request: Request) -> Response:
    authorize(request, "read")
    path = _browse(request).plot_file(Params(request).id("name"))
    if path is None:
        raise HTTPException(404, "no such plot in the report")
    return FileResponse(path, media_type="image/png", headers={"X-Content-Type-Options": "nosniff"})


def mount(app: Any, report_dir: str | Path | None) -> None:
    """Attach the page's state to ``app`` (its routes are in :data:`router`)."""
    from mosaicrec.serving.browse import Browse

    app.state.browse = Browse(app.state.service, report_dir)
    app.state.ui_page = _template().render(version=__version__)  # no per-request data: rendered once
