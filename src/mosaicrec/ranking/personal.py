"""How the model scores one user: the first step of the pipeline (candidates).

A user the model trained on, whose live events it has seen, is served from their model row. A user it never
saw, or whose likes or dislikes changed since, is folded in from their live likes (and their times: a
sequential model reads them as the order of the history). A user with nothing to go on (new and without
likes, or erased) has no :class:`Personal` scores: the pipeline gives them the popular items.

A factor model's user is a query vector ``[q, 1]`` over the snapshot's item rows ``[v_i, b_i]``, which the
retriever (exact or HNSW) searches; any other model's user is the model's scores of its items. Items added
since training are scored through their content proxies either way (:mod:`mosaicrec.ranking.snapshot`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mosaicrec.errors import NotSupportedError
from mosaicrec.models.query import Query
from mosaicrec.ranking.lists import ItemList
from mosaicrec.ranking.live import LiveState, UserEvents
from mosaicrec.ranking.retrieval import top_allowed
from mosaicrec.ranking.snapshot import Snapshot


@dataclass(frozen=True)
class QueryVector:
    """A factor model's user: ``[q, 1]``, whose inner product with an item row ``[v_i, b_i]`` is the score."""

    vector: np.ndarray

    def candidates(self, snap: Snapshot, n: int, allowed: np.ndarray) -> ItemList:
        """The ``n`` best allowed catalog items, best first: model items from the retriever, items added
        since training through their proxies' rows, merged."""
        n_model = snap.n_model
        ids, vals = snap.view.retriever.top(self.vector, n, allowed[:n_model])
        extra = _placed_extra(snap, allowed)
        if extra is not None:
            cand = np.flatnonzero(extra)
            ids = np.concatenate([ids, cand + n_model])
            vals = np.concatenate([vals, snap.proxies.rows[cand] @ self.vector])
            order = np.argsort(-vals, kind="stable")[:n]
            ids, vals = ids[order], vals[order]
        return ItemList(ids, vals.astype(np.float32))

    def all_scores(self, snap: Snapshot) -> np.ndarray:
        rows = snap.rows_all if snap.rows_all is not None else snap.view.rows
        return rows @ self.vector


@dataclass(frozen=True)
class ModelScores:
    """Any other model's user: its scores of the model's items."""

    scores: np.ndarray

    def candidates(self, snap: Snapshot, n: int, allowed: np.ndarray) -> ItemList:
        ids, vals = top_allowed(self.all_scores(snap, allowed), n, allowed)
        return ItemList(ids, vals)

    def all_scores(self, snap: Snapshot, allowed: np.ndarray | None = None) -> np.ndarray:
        extra = allowed is None or _placed_extra(snap, allowed) is not None
        return on_catalog(snap, self.scores[None, :], extra)[0]


def on_catalog(snap: Snapshot, scores: np.ndarray, extra: bool = True) -> np.ndarray:
    """Rows of scores of the model's items, over the whole catalog: items added since training get the mix
    of their proxies' scores, ``-inf`` where they have no content to be placed by (or every one, without
    ``extra``). A fresh float32 array (the batch path masks it in place)."""
    n_model = snap.n_model
    out = np.full((scores.shape[0], len(snap.catalog)), -np.inf, np.float32)
    out[:, :n_model] = scores
    if len(snap.catalog) > n_model and extra:
        out[:, n_model:] = np.where(snap.proxies.placed, (snap.proxies.weights @ scores.T).T, -np.inf)
    return out


Personal = QueryVector | ModelScores


def _placed_extra(snap: Snapshot, allowed: np.ndarray) -> np.ndarray | None:
    """The allowed items added since training that have content to be placed by (None: none)."""
    if len(snap.catalog) <= snap.n_model:
        return None
    extra = allowed[snap.n_model:] & snap.proxies.placed
    return extra if extra.any() else None


class Scorer:
    """Finds each user's :class:`Personal` scores, keeping folded-in users until their events change.

    Model calls are serialised by :attr:`lock`: numba's workqueue threading layer (which the kernels use so
    that torch keeps its threads) must not be entered from two threads at once."""

    #: bytes of folded-in users kept (query vector or scores, per model and scenario) until their events
    #: change: a fold-in costs ~0.4 ms, and a user who pages or comes back asks again with the same history.
    #: Bounded in bytes, not users: a non-factor model's entry holds a score per item (400 kB at 100k
    #: items), so a count bound let the service grow by gigabytes; the oldest entries go first.
    FOLD_CACHE_BYTES = 16_000_000

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._folded: dict[str, tuple[tuple[int, str | None], Personal, UserEvents]] = {}
        self._folded_bytes = 0

    def __getstate__(self) -> dict:  # a scorer travels to Ray workers empty, with a lock of its own
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def forget(self, user_id: str) -> None:
        with self.lock:
            gone = self._folded.pop(user_id, None)
            if gone is not None:
                self._folded_bytes -= _nbytes(gone[1])

    def _keep(self, user_id: str, key: tuple[int, str | None], found: Personal, ev: UserEvents) -> None:
        """Cache a fold-in (call with the lock held), evicting the oldest past the byte bound."""
        self.forget(user_id)
        self._folded[user_id] = (key, found, ev)
        self._folded_bytes += _nbytes(found)
        while self._folded_bytes > self.FOLD_CACHE_BYTES and len(self._folded) > 1:
            oldest = next(iter(self._folded))
            self._folded_bytes -= _nbytes(self._folded.pop(oldest)[1])

    def trained_row(self, snap: Snapshot, live: LiveState, user_id: str) -> int | None:
        """The user's model row, unless the model has none or must not serve it (erased since)."""
        row = snap.view.users.get(user_id)
        return None if row is None or user_id in live.blocked else row

    def personal(self, snap: Snapshot, live: LiveState, user_id: str, ev: UserEvents, hist: np.ndarray,
                 scenario: str | None) -> Personal | None:
        """How the model scores this user now, or ``None`` when there is nothing to go on (cold start)."""
        view = snap.view
        model = view.model
        row = self.trained_row(snap, live, user_id)
        fold = row is None or user_id in live.changed
        model_hist = hist[hist < view.n_items]
        if fold and not len(model_hist) and row is None:
            return None
        factors = view.rows is not None
        if not fold and factors:  # a trained user's row: plain numpy, no numba kernel, no lock needed
            return _query(model.query_factors(Query(users=np.array([row]), context=scenario))[0])
        if fold and len(model_hist):
            key = (id(view), scenario)
            hit = self._folded.get(user_id)
            if hit is not None and hit[0] == key and hit[2] is ev:  # same model, scenario and history
                return hit[1]
        with self.lock:
            if fold and len(model_hist):
                try:
                    found = self._fold_in(snap, ev, model_hist, scenario)
                    self._keep(user_id, (id(view), scenario), found, ev)
                    return found
                except NotSupportedError:
                    if row is None:
                        return None  # this model cannot place a user it never saw: the popular list
            if row is None:
                return None
            if factors:
                return _query(model.query_factors(Query(users=np.array([row]), context=scenario))[0])
            return ModelScores(model.score(Query(users=np.array([row]), context=scenario))[0])

    @staticmethod
    def _fold_in(snap: Snapshot, ev: UserEvents, model_hist: np.ndarray, scenario: str | None) -> Personal:
        model = snap.view.model
        x = _history_row(model_hist, snap.view.n_items)
        # with the events' times: a sequential model reads them as the order of the history, a time-window
        # popularity prior counts "now" from them
        query = Query(history=x, timestamps=_time_row(x, ev, snap.catalog.index), context=scenario)
        if snap.view.rows is not None:
            return _query(model.query_factors(query)[0])
        return ModelScores(model.score(query)[0])


def _query(q: np.ndarray) -> QueryVector:
    return QueryVector(np.append(q, np.float32(1.0)).astype(np.float32))


def _history_row(hist: np.ndarray, n_model: int) -> sp.csr_matrix:
    """A user's live likes as one row over the model's items (items added since training dropped)."""
    row = np.unique(hist[hist < n_model])
    return sp.csr_matrix((np.ones(len(row), np.float32), (np.zeros(len(row), int), row)), shape=(1, n_model))


def _time_row(x: sp.csr_matrix, ev: UserEvents, index: dict[str, int]) -> sp.csr_matrix:
    """The times of a history row's events (the same pattern as ``x``), from the user's latest events."""
    when = {index[item]: t for item, t, _ in ev.last if item in index}
    data = np.array([when.get(int(i), 0) for i in x.indices], np.float64)
    return sp.csr_matrix((data, x.indices.copy(), x.indptr.copy()), shape=x.shape)


def _nbytes(found: Personal) -> int:
    array = getattr(found, "vector", None)
    array = getattr(found, "scores", None) if array is None else array
    return 200 + (array.nbytes if isinstance(array, np.ndarray) else 0)
