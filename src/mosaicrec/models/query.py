"""The one request value every model answers.

A :class:`Query` names who to score for — trained users by index, **or** users the model never trained on by
their events (an ordered history: items, timestamps, weights) — together with the request's context, user
profiles, candidate items and exclusions; or, with ``items``, (user, item) pairs such as logged events.
Fold-in, context, sequences, pairs and a multi-task model's heads are fields of the query, not separate
methods: ``model.score(query)`` and ``model.recommend(query, k)`` serve all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from mosaicrec.data.schema import Interactions
from mosaicrec.errors import MosaicError


#: The context of a request: one value of the model's context column (e.g. a scenario) for every row, one
#: value per row, a mapping of context columns to per-row values (an event's whole context, of which each
#: model reads its own columns), or ``None`` (no context: the model's shared, context-free scores).
Context = str | Sequence[str] | np.ndarray | Mapping[str, Any] | None


@dataclass(frozen=True)
class Query:
    """Who to rank for, and under what conditions (see the module).

    ``users``: trained user indices; ``history``: ``n × n_items`` events of users not trained on (its data
    are the event weights); ``timestamps``: the same pattern as ``history`` with each event's time, so the
    order of a history is known; ``profiles``: ``n × d`` embeddings (models with ``uses_profiles``);
    ``context``: one value for all rows or one per row (context models); ``candidates``: the only item
    indices that may be returned; ``exclude``: ``n × n_items`` items never returned (default: the rows'
    seen items — the trained users' training items, or the history itself); ``exclude_seen=False`` turns
    the default off. ``items`` (one item index per row) asks for the score of each (row, item) pair
    instead of every item; ``head`` names which output of a multi-task model to score (``"score"``: the
    ranking blend, the only head of other models)."""

    users: np.ndarray | None = None
    history: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    profiles: np.ndarray | None = None
    context: Any = None
    candidates: np.ndarray | None = None
    exclude: sp.csr_matrix | None = None
    exclude_seen: bool = True
    items: np.ndarray | None = None
    head: str = "score"

    def __post_init__(self) -> None:
        if (self.users is None) == (self.history is None):
            raise MosaicError("a query names either users (trained) or a history (new users), not both")
        if self.history is not None:
            object.__setattr__(self, "history", sp.csr_matrix(self.history, dtype=np.float32))
        else:
            object.__setattr__(self, "users", np.atleast_1d(np.asarray(self.users, dtype=np.int64)))
        n = len(self)
        for name in ("profiles", "exclude", "timestamps"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise MosaicError(f"query: {value.shape[0]} rows of {name} for {n} rows")
        if self.items is not None:
            object.__setattr__(self, "items", np.atleast_1d(np.asarray(self.items, dtype=np.int64)))
            if len(self.items) != n:
                raise MosaicError(f"query: {len(self.items)} items for {n} rows (one item per row)")
        columns = self.context.values() if isinstance(self.context, Mapping) else [self.context]
        for values in columns:
            if values is not None and not isinstance(values, str) and len(values) != n:
                raise MosaicError(f"query: {len(values)} context values for {n} rows")

    def __len__(self) -> int:
        return self.history.shape[0] if self.history is not None else len(self.users)

    @property
    def new_users(self) -> bool:
        """Whether the rows are users the model never trained on (a history), to be folded in."""
        return self.history is not None

    @classmethod
    def from_events(cls, items: Sequence[Sequence[int]], n_items: int, *,
                    timestamps: Sequence[Sequence[float]] | None = None,
                    weights: Sequence[Sequence[float]] | None = None, **fields: Any) -> Query:
        """A query for new users from their event lists (item indices, optionally with times and weights,
        one list per user; later events of the same item replace earlier ones)."""
        rows, cols, vals, times = [], [], [], []
        for r, row in enumerate(items):
            last: dict[int, int] = {}
            for pos, item in enumerate(row):
                last[int(item)] = pos
            for item, pos in last.items():
                rows.append(r), cols.append(item)
                vals.append(1.0 if weights is None else float(weights[r][pos]))
                times.append(0.0 if timestamps is None else float(timestamps[r][pos]))
        shape = (len(items), n_items)
        history = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=shape)
        ts = None if timestamps is None else sp.csr_matrix((np.asarray(times), (rows, cols)), shape=shape)
        return cls(history=history, timestamps=ts, **fields)

    @classmethod
    def of_pairs(cls, events: Interactions, **fields: Any) -> Query:
        """A query of the (user, item) pairs of ``events`` (trained user and item indices), each in its
        event's own context: one score per event (what impression metrics read)."""
        return cls(users=events.users, items=events.items, context=events.context or None, **fields)

    @classmethod
    def of_events(cls, events: Interactions, **fields: Any) -> Query:
        """A query for the users of ``events`` (every user index of its id map, one row each) as new
        users: their events as the history (binary) and each event's latest time as ``timestamps``."""
        shape = (events.n_users, events.n_items)
        order = np.argsort(events.timestamps, kind="stable")
        key = events.users[order].astype(np.int64) * events.n_items + events.items[order]
        _, first_from_end = np.unique(key[::-1], return_index=True)
        last = order[len(key) - 1 - first_from_end]  # each (user, item)'s latest event
        rows, cols = events.users[last], events.items[last]
        history = sp.csr_matrix((np.ones(len(last), np.float32), (rows, cols)), shape=shape)
        times = sp.csr_matrix((events.timestamps[last].astype(np.float64), (rows, cols)), shape=shape)
        return cls(history=history, timestamps=times, **fields)

    def rows(self, start: int, stop: int) -> Query:
        """The query restricted to rows ``start:stop`` (batching)."""
        cut: dict[str, Any] = {}
        for name in ("users", "history", "timestamps", "profiles", "exclude", "items"):
            value = getattr(self, name)
            cut[name] = None if value is None else value[start:stop]
        return Query(**cut, context=_cut_context(self.context, start, stop), candidates=self.candidates,
                     exclude_seen=self.exclude_seen, head=self.head)


def _cut_context(context: Context, start: int, stop: int) -> Context:
    if context is None or isinstance(context, str):
        return context
    if isinstance(context, Mapping):
        return {k: _cut_context(v, start, stop) for k, v in context.items()}
    return context[start:stop] if isinstance(context, np.ndarray) else list(context)[start:stop]
