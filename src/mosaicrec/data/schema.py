"""The data model: items, users and interaction events, and the value types passed between stages.

Three tables describe a recommendation problem:

* **items**: ``item_id``, ``title``, free-text fields (``texts``), an ``image`` path/URI, a ``video`` and an ``audio``
  path, and categorical/numeric ``attributes`` (a value or a list of values per attribute);
* **users**: ``user_id`` and ``attributes``;
* **events**: ``user_id``, ``item_id``, ``timestamp`` (Unix seconds), ``event_type``, ``weight``
  (a rating, a count or 1.0) and ``context`` columns (scenario, device, ...).

Between stages the events travel as one :class:`Interactions` value (index arrays into fixed id maps, plus a
cached user×item CSR matrix), so a model can be used from a notebook without the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.errors import UnknownItemError, UnknownUserError
from mosaicrec.data.likes import LikeRule, like_threshold

ITEM_COLUMNS = ["item_id", "title", "texts", "image", "audio", "video", "attributes"]
#: the last second of year 9999: later (or negative) event times are refused everywhere (files, API, CLI)
MAX_TIMESTAMP = 253_402_300_799
#: the largest event weight accepted (|weight|): larger ones overflow squared-error training to inf/NaN
MAX_WEIGHT = 1e9
USER_COLUMNS = ["user_id", "attributes"]


def with_item_columns(items: "pd.DataFrame") -> "pd.DataFrame":
    """A catalog frame with every canonical column (those it lacks, e.g. ``video`` in a frame made before
    video items, added as ``None``)."""
    missing = [c for c in ITEM_COLUMNS if c not in items]
    if not missing:
        return items
    items = items.copy()
    for c in missing:
        items[c] = pd.Series([None] * len(items), index=items.index, dtype=object)
    return items


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventSchema(_Schema):
    """Which source column holds each event field. ``None`` (or "") means the source has no such column;
    an optional field left at its default name is treated as absent when the file lacks that column."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = "timestamp"
    weight: str | None = "weight"
    event_type: str | None = "event_type"
    context: list[str] = Field(default_factory=list, description="context columns kept as strings")
    default_event_type: str = "interaction"
    timestamp_unit: str = Field("s", description="unit of numeric timestamps: s or ms")


class ItemSchema(_Schema):
    """Which source columns describe an item."""

    id: str = "item_id"
    title: str | None = "title"
    texts: list[str] = Field(default_factory=list, description="free-text columns, e.g. description")
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    attributes: list[str] = Field(default_factory=list, description="categorical or numeric columns")
    multi_value_separator: str | None = Field("|", description="splits multi-valued attribute strings")
    media_root: str | None = Field(None, description="relative media paths resolve against this folder")


class UserSchema(_Schema):
    """Which source columns describe a user."""

    id: str = "user_id"
    attributes: list[str] = Field(default_factory=list)


def binary_rows(m: sp.spmatrix) -> sp.csr_matrix:
    """A float32 CSR copy of ``m`` with 1.0 at every stored entry: which items each row holds, not how
    often or how strongly."""
    out = sp.csr_matrix(m, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out


def context_floats(events: "Interactions", column: str) -> np.ndarray:
    """A numeric column of the events' context (e.g. an impression's label or play time) as float64; an
    empty value is 0. A value that is no finite number is refused, naming the column and the first event."""
    raw = np.asarray(events.context[column]).astype(str)
    try:
        out = np.where(raw == "", "0", raw).astype(np.float64)
    except ValueError:
        bad = next(k for k, v in enumerate(raw) if not _is_float(v))
        raise ValueError(f"event column {column!r} holds values that are no numbers (event {bad}: "
                         f"{str(raw[bad])[:40]!r})") from None
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise ValueError(f"event column {column!r} holds a value that is not finite (event {bad}: "
                         f"{str(raw[bad])!r})")
    return out


def answered_lists(contexts: pd.Series) -> np.ndarray:
    """Per event, the ``request_id`` of the served list its context names (``{"request_id": "..."}``), else
    None: the one rule by which feedback is attributed to a list (the bandit's rewards, the off-policy log's)."""
    ctx = contexts.astype(str)
    out = np.full(len(ctx), None, object)
    for row in np.flatnonzero(ctx.str.contains("request_id", regex=False).to_numpy()):
        try:
            rid = json.loads(ctx.iloc[row]).get("request_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(rid, str):
            out[row] = rid
    return out


def _is_float(v: str) -> bool:
    try:
        float(v or "0")
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Interactions:
    """Events as index arrays into fixed user/item id maps.

    ``user_ids[u]`` is the external id of user index ``u`` (likewise items). Splits and filters keep the
    id maps, so a train and a test value index the same catalog.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray
    event_types: np.ndarray | None = None
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "weights", "timestamps"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} entries, expected {n}")

    @classmethod
    def from_arrays(cls, users: np.ndarray, items: np.ndarray, weights: np.ndarray | None = None,
                    timestamps: np.ndarray | None = None, n_users: int | None = None,
                    n_items: int | None = None) -> Interactions:
        """Build from integer index arrays; ids are the indices themselves (handy in tests and notebooks)."""
        users = np.asarray(users, dtype=np.int32)
        items = np.asarray(items, dtype=np.int32)
        n_users = int(users.max()) + 1 if n_users is None else n_users
        n_items = int(items.max()) + 1 if n_items is None else n_items
        return cls(
            user_ids=np.arange(n_users).astype(str).astype(object),
            item_ids=np.arange(n_items).astype(str).astype(object),
            users=users, items=items,
            weights=np.ones(len(users), np.float32) if weights is None else np.asarray(weights, np.float32),
            timestamps=np.zeros(len(users), np.int64) if timestamps is None
            else np.asarray(timestamps, np.int64),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return len(self.users)

    def __len__(self) -> int:
        return self.n_events

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """User×item CSR of weights; repeated (user, item) events are summed."""
        m = sp.csr_matrix((self.weights.astype(np.float32), (self.users, self.items)),
                          shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        return m

    @cached_property
    def binary(self) -> sp.csr_matrix:
        """User×item CSR with 1.0 wherever any event exists."""
        return binary_rows(self.matrix)

    @cached_property
    def positions(self) -> np.ndarray:
        """Each event's position among its user's events in time order (0: the user's first; ties keep
        the log's order)."""
        order = np.lexsort((np.arange(self.n_events), self.timestamps, self.users))
        users = self.users[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if self.n_events else np.zeros(0, int)
        out = np.empty(self.n_events, np.int64)
        out[order] = np.arange(self.n_events) - np.repeat(starts, np.diff(np.r_[starts, self.n_events]))
        return out

    def subset(self, mask: np.ndarray) -> Interactions:
        """The events selected by a boolean mask or index array, with the same id maps."""
        return replace(
            self,
            users=self.users[mask], items=self.items[mask], weights=self.weights[mask],
            timestamps=self.timestamps[mask],
            event_types=None if self.event_types is None else self.event_types[mask],
            context={k: v[mask] for k, v in self.context.items()},
        )

    def with_weights(self, weights: np.ndarray) -> Interactions:
        return replace(self, weights=np.asarray(weights, np.float32))

    @cached_property
    def _user_lookup(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def _item_lookup(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.item_ids)}

    def user_index(self, ids: Any) -> np.ndarray:
        """Map external user ids to indices; raises :class:`UnknownUserError` naming the first unknown id."""
        return _lookup(self._user_lookup, ids, UnknownUserError, "user")

    def item_index(self, ids: Any) -> np.ndarray:
        """Map external item ids to indices; raises :class:`UnknownItemError` naming the first unknown id."""
        return _lookup(self._item_lookup, ids, UnknownItemError, "item")


def _lookup(table: dict[str, int], ids: Any, error: type[Exception], kind: str) -> np.ndarray:
    ids = [ids] if isinstance(ids, (str, int, np.integer)) else list(ids)
    out = np.empty(len(ids), dtype=np.int32)
    for n, i in enumerate(ids):
        try:
            out[n] = table[str(i)]
        except KeyError:
            raise error(f"unknown {kind} id {i!r}") from None
    return out


@dataclass(frozen=True)
class Dataset:
    """A loaded recommendation problem: catalog, users and interactions, aligned by index.

    ``items`` row ``i`` describes ``interactions.item_ids[i]``; ``users`` row ``u`` describes
    ``interactions.user_ids[u]``. ``rating_scale`` is set for explicit ratings (e.g. ``(1, 5)``); ``likes``
    is the declared rule for which weights are likes (:mod:`mosaicrec.data.likes`), ``None`` if none was.
    """

    name: str
    interactions: Interactions
    items: pd.DataFrame
    users: pd.DataFrame
    rating_scale: tuple[float, float] | None = None
    likes: LikeRule | None = None

    def like_threshold(self, given: float | None = None) -> float | None:
        """The threshold likes are read with: ``given``, else the declared rule, else every weight above 0
        (refused where the weights look like ratings: :func:`~mosaicrec.data.likes.like_threshold`)."""
        return like_threshold(self.interactions.weights, self.likes, given, f"dataset {self.name!r}")

    def titles(self, item_index: np.ndarray) -> list[str]:
        titles = self.items["title"].to_numpy()
        return [str(titles[i]) if titles[i] else str(self.interactions.item_ids[i]) for i in item_index]

    def item_attribute_matrix(self, attribute: str | None = None) -> sp.csr_matrix | None:
        """Multi-hot item×value matrix of categorical attributes (one attribute, or all), or ``None``."""
        rows, cols, vocab = [], [], {}
        for i, attrs in enumerate(self.items["attributes"]):
            for name, value in (attrs or {}).items():
                if attribute is not None and name != attribute:
                    continue
                values = value if isinstance(value, list) else [value]
                for v in values:
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        continue  # numeric attributes are not categories
                    rows.append(i)
                    cols.append(vocab.setdefault((name, v), len(vocab)))
        if not vocab:
            return None
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                             shape=(len(self.items), len(vocab)))

    def summary(self) -> dict[str, Any]:
        x = self.interactions
        return {
            "dataset": self.name, "users": x.n_users, "items": x.n_items, "events": x.n_events,
            "density": x.n_events / max(1, x.n_users * x.n_items),
            "rating_scale": self.rating_scale,
            "likes": self.likes.describe() if self.likes is not None else None,
        }
