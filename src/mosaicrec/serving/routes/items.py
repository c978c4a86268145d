"""Items: similar items and search (read key); add, replace, change and upload (write key)."""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from mosaicrec.data.schema import ITEM_COLUMNS
from mosaicrec.serving.media import MediaRejected
from mosaicrec.serving.routes.common import READ, WRITE, Params, authorize, json_response, query_doc, service
from mosaicrec.serving.schemas import (Id, ItemFields, ItemIn, ItemsIn, ItemsOut, SearchIn, SearchOut, SimilarOut,
                                       StoredItemOut)

router = APIRouter(tags=["items"])
FIELDS = ITEM_COLUMNS
UPLOADS = ("image", "audio", "video")


@router.get("/items/{item_id}/similar", response_model=SimilarOut, openapi_extra=query_doc(
    ("item_id", "path", {"type": "string", "minLength": 1, "maxLength": 256}, "external item id"),
    ("k", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "list length"),
    ("modality", "query", {"type": "string", "maxLength": 64}, "one modality instead of the fused content")))
async def similar(request: Request) -> Response:
    """Nearest items by fused content, or by one modality. Needs a read key."""
    authorize(request, "read")
    p = Params(request)
    item_id = p.id("item_id")
    return json_response({"item_id": item_id,
                          "items": service(request).similar(item_id, p.int("k", 10, 1, 1_000), p.str("modality", 64))})


@router.get("/items/{item_id}/media/{kind}", openapi_extra=query_doc(
    ("item_id", "path", {"type": "string", "minLength": 1, "maxLength": 256}, "external item id"),
    ("kind", "path", {"type": "string", "enum": ["image", "audio", "video", "frame"]},
     "which media (frame: the video's first frame as JPEG)")),
    responses={200: {"content": {"image/*": {}, "audio/*": {}, "video/*": {}}},
               404: {"description": "no servable media"}})
async def media(request: Request) -> Response:
    """The item's image, audio or video file, when it lies in the server's media root (nothing outside it
    is ever served; types are fixed by suffix, with ``nosniff``), or its video's first frame. Needs a read
    key."""
    authorize(request, "read")
    p = Params(request)
    item_id, kind = p.id("item_id"), p.id("kind")
    if kind == "frame":
        data = await run_in_threadpool(request.app.state.browse.video_frame, item_id)
        return Response(data, media_type="image/jpeg", headers={"X-Content-Type-Options": "nosniff",
                                                                "Cache-Control": "private, max-age=3600"})
    path, media_type = request.app.state.browse.media_file(item_id, kind)
    return FileResponse(path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff",
                                                              "Cache-Control": "private, max-age=3600"})


@router.post("/search", response_model=SearchOut, dependencies=[READ])
def search(request: Request, body: SearchIn) -> Response:
    """Items nearest in meaning to a text query (image- and audio-only items too); with ``user_id``, ties
    go to the user's taste."""
    return json_response({"query": body.query, "items": service(request).search(body.query, body.k, body.user_id)})


@router.get("/items/{item_id}", response_model=StoredItemOut, dependencies=[READ])
def get_item(request: Request, item_id: Id) -> Response:
    return json_response(service(request).item(item_id))


def _row(request: Request, item_id: str, fields: ItemFields, partial: bool) -> dict[str, Any]:
    """A canonical row from client fields; media references go through the media policy (paths inside the
    media root only). With ``partial``, fields the client did not send stay ``...`` (left as stored)."""
    given = fields.model_dump(exclude_unset=partial)
    media = service(request).media
    for kind in UPLOADS:
        if given.get(kind):
            given[kind] = media.resolve(given[kind], kind)
    row: dict[str, Any] = {"item_id": item_id}
    for name in FIELDS[1:]:
        row[name] = given.get(name, ...) if partial else given.get(name)
    if not partial:
        row["title"] = row["title"] or item_id
        row["texts"] = {k: v for k, v in (row["texts"] or {}).items() if v is not None}
        row["attributes"] = {k: v for k, v in (row["attributes"] or {}).items() if v is not None}
    return row


@router.post("/items", response_model=ItemsOut, status_code=201, dependencies=[WRITE])
def add_items(request: Request, body: ItemsIn) -> dict[str, Any]:
    """Add new items (an existing id is a 409: replace it with PUT, change fields with PATCH). Their content
    is encoded before anything is written; they are recommendable at once, by content."""
    frame = pd.DataFrame([_row(request, i.item_id, i, False) for i in body.items], columns=FIELDS)
    return {"items": service(request).add_items(frame, "create")}


@router.put("/items/{item_id}", response_model=ItemsOut, dependencies=[WRITE])
def replace_item(request: Request, item_id: Id, body: ItemFields) -> dict[str, Any]:
    """Create or replace an item as a whole: fields not sent are emptied."""
    frame = pd.DataFrame([_row(request, item_id, body, False)], columns=FIELDS)
    return {"items": service(request).add_items(frame, "replace")}


@router.patch("/items/{item_id}", response_model=ItemsOut, dependencies=[WRITE])
def patch_item(request: Request, item_id: Id, body: ItemFields) -> dict[str, Any]:
    """Change some fields of an existing item (JSON merge patch): fields sent replace the stored ones;
    ``texts`` and ``attributes`` merge key by key, a ``null`` value removing a key."""
    frame = pd.DataFrame([_row(request, item_id, body, True)], columns=FIELDS)
    return {"items": service(request).add_items(frame, "patch")}


@router.post("/items/upload", response_model=ItemsOut, status_code=201, dependencies=[WRITE])
async def upload_item(request: Request, item: str = Form(..., max_length=100_000,
                                                          description="the item's fields as JSON (item_id, "
                                                          "title, texts, attributes)"),
                      image: UploadFile | None = File(None), audio: UploadFile | None = File(None),
                      video: UploadFile | None = File(None)) -> Response:
    """Add (or replace) one item with its image, audio and/or video uploaded in the same request
    (``multipart/form-data``). Files are kept in the media root by content hash; one that cannot be
    decoded is refused (422) and nothing is written; so is a field other than these four. A video is
    checked in the decoding sandbox (limits on size, duration, frame size and streams)."""
    svc = service(request)
    unknown = sorted(set((await request.form()).keys()) - {"item", *UPLOADS})
    if unknown:
        raise MediaRejected(f"{unknown[0]}: not an upload field (send item, and image, audio and/or video)")
    try:
        fields = ItemIn.model_validate(json.loads(item))
    except (json.JSONDecodeError, PydanticValidationError) as e:
        first = e.errors()[0] if isinstance(e, PydanticValidationError) else {"loc": (), "msg": str(e)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise MediaRejected(f"item{'.' + where if where else ''}: {first.get('msg')}") from None
    if fields.image or fields.audio or fields.video:
        raise MediaRejected("item: send the media as files (image, audio, video), not as paths, in an upload")
    row = _row(request, fields.item_id, fields, False)
    saved: list[str] = []
    try:
        for kind, upload in (("image", image), ("audio", audio), ("video", video)):
            if upload is not None:
                data = await upload.read(svc.media.limit(kind) + 1)
                path, new = await run_in_threadpool(svc.media.save_upload, data, upload.filename, kind)
                row[kind] = path
                if new:
                    saved.append(path)
        frame = pd.DataFrame([row], columns=FIELDS)
        ids = await run_in_threadpool(svc.add_items, frame, "replace")
    except Exception:
        for path in saved:  # nothing kept of a refused upload
            os.unlink(path)
        raise
    return json_response({"items": ids}, 201)
