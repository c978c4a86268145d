"""Live state: every user's events as the store holds them now, kept in time order, and the rules they set.

The pipeline's rules read it: a user's likes are folded in (and cited), their dislikes never come back, an
erased user's model row is never served again (:attr:`LiveState.blocked`).

One writer (the event path, under :attr:`LiveState.lock`) replaces a user's entry as a whole; readers take
the entry without a lock and so always see one consistent version of it. For each (user, item) the most
recent event decides: a like followed by a dislike is a dislike. Positives are kept oldest first, so "the
user's recent history" is the end of the tuple, never the highest item ids.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mosaicrec.data.likes import positive


@dataclass(frozen=True)
class UserEvents:
    """One user's live state: items liked (oldest first) and items disliked (weight below the threshold)."""

    positives: tuple[str, ...] = ()
    negatives: frozenset[str] = frozenset()
    last: tuple[tuple[str, int, bool], ...] = ()  # (item, time, positive), the latest event per item

    @property
    def seen(self) -> set[str]:
        return {*self.positives, *self.negatives}


EMPTY = UserEvents()


class LiveState:
    """Per-user live events, the tombstones of erased users, and which users the model must fold in."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.users: dict[str, UserEvents] = {}
        self.erased: dict[str, int] = {}  # user → erased at (Unix s), from the store's tombstones
        self.changed: set[str] = set()  # users whose live events the served model has not trained on
        self.blocked: set[str] = set()  # users whose model rows must not be served (erased since training)
        self.lock = threading.Lock()
        self._popularity: Counter | None = None  # counted on first use after a change

    def __getstate__(self) -> dict:
        """A copy for another process (an export's Ray workers): the state without the writer's lock."""
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def load(self, events: pd.DataFrame, erasures: dict[str, int]) -> None:
        """Start from the store's events (columns user_id, item_id, timestamp, weight) and tombstones."""
        self.erased = dict(erasures)
        self.users = {}
        self._popularity = None
        if not len(events):
            return
        # the same state _merge makes, in bulk: a 500k-event store loads in a second, not three
        ev = events.sort_values("timestamp", kind="stable")
        users, items = _strings(ev["user_id"]), _strings(ev["item_id"])
        ts = ev["timestamp"].astype("int64").to_numpy()
        pos = positive(ev["weight"].to_numpy(), self.threshold)
        pairs = pd.DataFrame({"u": users, "i": items})
        latest = ~pairs.duplicated(keep="last").to_numpy()
        # ties in time keep the order in which each item first appeared (as _merge's dict does)
        first = pairs.groupby(["u", "i"], sort=False).ngroup().to_numpy()[latest]
        users, items, ts, pos = users[latest], items[latest], ts[latest], pos[latest]
        codes, names = pd.factorize(users)
        order = np.lexsort((first, ts, codes))
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        for rows in np.split(order, bounds):
            it, p = items[rows], pos[rows]
            self.users[names[codes[rows[0]]]] = UserEvents(tuple(it[p].tolist()), frozenset(it[~p].tolist()),
                                                          tuple(zip(it.tolist(), ts[rows].tolist(), p.tolist())))

    def apply(self, events: pd.DataFrame) -> None:
        """Events just written to the store (the one writer calls this). A user whose likes changed is folded
        in from now on; a dislike of an item they never liked only takes that item out of their lists."""
        with self.lock:
            self.changed.update(self._merge(events))

    def _merge(self, events: pd.DataFrame) -> set[str]:
        """Fold events into the per-user state; returns the users whose likes changed."""
        self._popularity = None
        ev = events.sort_values("timestamp", kind="stable")
        pos = positive(ev["weight"].to_numpy(), self.threshold)
        per_user: dict[str, list[tuple[str, int, bool]]] = {}
        for u, i, t, p in zip(ev["user_id"].astype(str), ev["item_id"].astype(str),
                              ev["timestamp"].astype("int64"), pos):
            per_user.setdefault(u, []).append((i, int(t), bool(p)))
        liked_changed = set()
        for u, rows in per_user.items():
            before = self.users.get(u, EMPTY)
            latest = {i: (t, p) for i, t, p in before.last}
            for i, t, p in rows:
                if i not in latest or t >= latest[i][0]:
                    latest[i] = (t, p)
            last = tuple(sorted(((i, t, p) for i, (t, p) in latest.items()), key=lambda r: r[1]))
            now = UserEvents(tuple(i for i, _, p in last if p), frozenset(i for i, _, p in last if not p), last)
            self.users[u] = now
            if set(now.positives) != set(before.positives):
                liked_changed.add(u)
        return liked_changed

    def erase(self, user_id: str, at: int) -> None:
        with self.lock:
            self._popularity = None
            self.users.pop(user_id, None)
            self.changed.discard(user_id)
            self.erased[user_id] = max(at, self.erased.get(user_id, at))
            self.blocked = self.blocked | {user_id}

    def get(self, user_id: str) -> UserEvents:
        return self.users.get(user_id, EMPTY)

    def exclusions(self, users: list[str], ids: tuple[str, ...], index: dict[str, int]) -> sp.csr_matrix:
        """What each user's list may not hold, as a CSR row over the catalog (``ids``, and ``index`` from id
        to row): their likes and their dislikes."""
        indptr, indices = [0], []
        for u in users:
            ev = self.get(u)
            indices.extend(index[i] for i in ev.positives if i in index)
            indices.extend(index[i] for i in ev.negatives if i in index)
            indptr.append(len(indices))
        return sp.csr_matrix((np.ones(len(indices), np.float32), np.asarray(indices, np.int64),
                              np.asarray(indptr, np.int64)), shape=(len(users), len(ids)))

    def popularity(self) -> Counter:
        """Distinct users with a positive event, per item (counted again only after events or an erasure)."""
        counts = self._popularity
        if counts is None:
            counts = self._popularity = Counter(i for ev in self.users.values() for i in ev.positives)
        return counts

    def block_erased(self, data_as_of: float | None) -> None:
        """Block the model rows of users erased at or after the model's data was read (any tombstone, when
        that time is unknown)."""
        self.blocked = {u for u, at in self.erased.items() if data_as_of is None or at >= data_as_of}

    def refresh_changed(self, model_users: dict[str, int], item_index: dict[str, int], seen) -> None:
        """Recompute which trained users have live events their model row lacks (a like it never saw, or a
        dislike of an item it counted as a like): those are folded in. ``seen`` is the model's user × item
        CSR of trained positives; ``item_index`` maps item ids to model item indices."""
        changed = set()
        for u, ev in self.users.items():
            row = model_users.get(u)
            if row is None:
                changed.add(u)
                continue
            have = set(seen.indices[seen.indptr[row]:seen.indptr[row + 1]].tolist())
            likes = {item_index[i] for i in ev.positives if i in item_index}
            dislikes = {item_index[i] for i in ev.negatives if i in item_index}
            if not likes <= have or dislikes & have:
                changed.add(u)
        self.changed = changed


class TrainedState(LiveState):
    """The live state of a bare model (no store): each trained user's training items are their likes, read
    from the model's CSR when asked rather than copied into per-user tuples (a 10M-event model's state took
    14 s to build that way, more than the model took to fit). A write (events, an erasure, a load) turns it
    into a plain :class:`LiveState` holding the same users first."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, seen: sp.csr_matrix) -> None:
        super().__init__(None)
        self.seen = seen.tocsr()
        self.item_ids = np.asarray(item_ids).astype(str).astype(object)
        self.users = _SeenUsers(np.asarray(user_ids).astype(str).astype(object), self.item_ids, self.seen)

    @property
    def bare(self) -> bool:
        return isinstance(self.users, _SeenUsers)

    def _materialise(self) -> None:
        if self.bare:
            self.users = dict(self.users.items())

    def load(self, events: pd.DataFrame, erasures: dict[str, int]) -> None:
        self._materialise()
        super().load(events, erasures)

    def apply(self, events: pd.DataFrame) -> None:
        self._materialise()
        super().apply(events)

    def erase(self, user_id: str, at: int) -> None:
        self._materialise()
        super().erase(user_id, at)

    def popularity(self) -> Counter:
        if not self.bare:
            return super().popularity()
        counts = np.bincount(self.seen.indices, minlength=self.seen.shape[1])
        return Counter(dict(zip(self.item_ids[counts > 0].tolist(), counts[counts > 0].tolist())))

    def refresh_changed(self, model_users: dict[str, int], item_index: dict[str, int], seen) -> None:
        if self.bare and seen is self.seen:  # the model's own training items: nobody has changed
            self.changed = set()
        else:
            super().refresh_changed(model_users, item_index, seen)

    def exclusions(self, users: list[str], ids: tuple[str, ...], index: dict[str, int]) -> sp.csr_matrix:
        if not (self.bare and len(ids) == len(self.item_ids) and ids == self.users.ids_tuple()):
            return super().exclusions(users, ids, index)
        rows = self.users.rows(users)
        known = rows >= 0
        out = self.seen[np.where(known, rows, 0)]
        if not known.all():  # users without training items: empty rows
            out = sp.diags(known.astype(np.float32)) @ out
        return out.tocsr()


class _SeenUsers(Mapping):
    """User id → :class:`UserEvents` over a CSR of training items (users with at least one), built on read."""

    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, seen: sp.csr_matrix) -> None:
        self.user_ids, self.item_ids, self.seen = user_ids, item_ids, seen
        self._row: dict[str, int] | None = None
        self._ids: tuple[str, ...] | None = None

    def ids_tuple(self) -> tuple[str, ...]:
        if self._ids is None:
            self._ids = tuple(self.item_ids.tolist())
        return self._ids

    def rows(self, users: list[str]) -> np.ndarray:
        if self._row is None:
            self._row = {u: r for r, u in enumerate(self.user_ids.tolist())}
        return np.fromiter((self._row.get(u, -1) for u in users), np.int64, len(users))

    def __getitem__(self, user_id: str) -> UserEvents:
        r = self.rows([user_id])[0]
        lo, hi = (self.seen.indptr[r], self.seen.indptr[r + 1]) if r >= 0 else (0, 0)
        if hi == lo:
            raise KeyError(user_id)
        items = self.item_ids[self.seen.indices[lo:hi]].tolist()  # stored order, as the events came
        return UserEvents(tuple(items), frozenset(), tuple((i, 0, True) for i in items))

    def __iter__(self) -> Iterator[str]:
        return iter(self.user_ids[np.diff(self.seen.indptr) > 0].tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(np.diff(self.seen.indptr)))

    def __contains__(self, user_id: object) -> bool:
        try:
            self[user_id]
        except KeyError:
            return False
        return True


def history_indices(items: tuple[str, ...], index: dict[str, int]) -> np.ndarray:
    """Item ids (oldest first) as catalog indices, in the same order; ids the catalog lacks are dropped."""
    return np.fromiter((index[i] for i in items if i in index), np.int64)


def _strings(column: pd.Series) -> np.ndarray:
    """Ids as an object array of str (Arrow strings convert in C; iterating them costs 1 µs each)."""
    if pd.api.types.is_string_dtype(column.dtype) and not column.dtype == object:
        return column.to_numpy(dtype=object)
    return column.astype(str).to_numpy(dtype=object)
