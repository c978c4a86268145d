"""Request and response bodies of the HTTP API (pydantic), so ``/openapi.json`` documents every route.

Every client value is bounded: ids are 1-256 printable characters, texts and attribute values have length
limits, numbers must be finite (``NaN``, ``Infinity`` and ``1e400`` are refused) and event times lie in
1970..9999. A request that breaks a bound is a 422 naming the field; nothing is written.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from mosaicrec.data.schema import MAX_TIMESTAMP, MAX_WEIGHT
from mosaicrec.ranking.lists import Entry, Recommended

Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Short = Annotated[str, StringConstraints(max_length=1_000)]
AttrValue = int | float | bool | Short | list[Short]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)  # "5" is not a weight


class EventIn(_In):
    user_id: Id
    item_id: Id
    timestamp: int | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="Unix seconds (default: now)")
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "interaction"
    weight: float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT,
                          description="a rating, count or 1; below the model's positive threshold it is a "
                                      "dislike (never folded in as a like)")
    context: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                  Annotated[str, StringConstraints(max_length=256)]] = Field(default_factory=dict, max_length=16)


class EventsIn(_In):
    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class ItemFields(_In):
    """An item's fields. ``image`` / ``audio`` / ``video``: a path inside the server's media root (or upload
    the file with ``POST /items/upload``); URLs and other server paths are refused."""

    title: Annotated[str, StringConstraints(max_length=2_000)] | None = None
    texts: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                Annotated[str, StringConstraints(max_length=20_000)] | None] = Field(default_factory=dict,
                                                                                    max_length=32)
    image: Annotated[str, StringConstraints(min_length=1, max_length=1_024)] | None = None
    audio: Annotated[str, StringConstraints(min_length=1, max_length=1_024)] | None = None
    video: Annotated[str, StringConstraints(min_length=1, max_length=1_024)] | None = None
    attributes: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], AttrValue | None] = Field(
        default_factory=dict, max_length=64)

    @field_validator("attributes")
    @classmethod
    def _short_lists(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, v in value.items():
            if isinstance(v, list) and len(v) > 100:
                raise ValueError(f"attribute {key!r}: at most 100 values")
        return value


class ItemIn(ItemFields):
    item_id: Id


class ItemsIn(_In):
    items: list[ItemIn] = Field(min_length=1, max_length=1_000)


class SearchIn(_In):
    query: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]
    k: int = Field(10, ge=1, le=1_000)
    user_id: Id | None = None


class ReloadIn(_In):
    model_dir: Annotated[str, StringConstraints(min_length=1, max_length=1_024)] | None = Field(
        None, description="folder inside the server's model root (default: the one it started with)")


class RetrainIn(_In):
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="registered model name (default: the served model's)")
    params: dict[Annotated[str, StringConstraints(max_length=64)], int | float | bool | str | dict | list] | None \
        = Field(None, description="hyper-parameters (default: the served model's)")


# -- responses ----------------------------------------------------------------------------------------
#: A list's items and a user's list are the pipeline's own values (:mod:`mosaicrec.ranking.lists`): the
#: response models are those dataclasses, so the API cannot drift from what the pipeline returns.
ItemOut = Entry
RecommendationsOut = Recommended


class SimilarOut(BaseModel):
    item_id: str
    items: list[ItemOut]


class SearchOut(BaseModel):
    query: str
    items: list[ItemOut]


class StoredItemOut(BaseModel):
    item_id: str
    title: str | None = None
    texts: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class ItemsOut(BaseModel):
    items: list[str]


class EventsOut(BaseModel):
    received: int
    added: int


class ErasedOut(BaseModel):
    user_id: str
    events_erased: int


class ReloadOut(BaseModel):
    model: str
    model_dir: str
    reloads: int


class JobOut(BaseModel):
    job_id: str
    state: str = Field(description="queued, running, succeeded or failed")
    model: str
    model_dir: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    log_tail: str | None = None


class SnapshotOut(BaseModel):
    folder: str = Field(description="where the snapshot was written, on the server's machine")
    taken_at: float
    counts: dict[str, int]


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool


class StatusOut(BaseModel):
    model: str
    retrieval: str
    reloads: int
    snapshot: int
    items: int
    model_items: int
    users: int
    live_users: int
    content: list[str]
    content_status: str
    threshold: float | None
    uptime_s: float
    feedback: dict[str, int] = Field(default_factory=dict, description="events accepted, and how many of them "
                                     "name a served list (context.request_id)")
    explore: dict[str, Any] | None = Field(None, description="the exploring policy's settings (serve --explore)")
    bandit: dict[str, Any] | None = Field(None, description="the bandit's rewards (feedback on lists it chose), "
                                          "unmatched (naming its list but another user, an item not in it, or "
                                          "twice) and other_lists (feedback on lists it did not choose)")


class ErrorOut(BaseModel):
    detail: str
