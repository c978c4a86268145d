"""The impression log: every list the service shows, one row per shown item, kept in the store.

Rows carry the request id, user, item, position, score, the probability the item was shown with under the
policy that chose it (its propensity) and the scenario, so that a policy can later be measured off-line
on what was actually shown. A DuckDB commit costs ~10-20 ms, far more than a read request, so lists are
buffered and written by one background thread every ``interval`` seconds (and at shutdown): a crash can
lose the last interval of the log, never an event (events are written before their call returns).

The writer must not hold the GIL for long, or every request waits (Python hands the GIL over every 5 ms):
building a table of 5,000 Python strings took 12 ms, a stall of every request each second that was the
serving benchmark's whole p99 at 500 req/s. So a request logs its list as catalog indices (a numpy array),
and the flush builds the table from arrays (items dictionary-encoded against the catalog's ids, the
per-request columns repeated by index), which DuckDB reads without the GIL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from mosaicrec.ranking.lists import Draw

COLUMNS = ["request_id", "served_at", "user_id", "item_id", "position", "score", "propensity", "scenario",
           "model", "policy"]
SLATE_COLUMNS = ["request_id", "served_at", "user_id", "kind", "epsilon", "temperature", "explored", "candidates",
                 "scores", "greedy"]


class ImpressionLog:
    """Buffered writer of shown lists. ``write(impressions, slates)`` must write the Arrow tables of rows
    (``slates``: None when no list in the batch was drawn at random) to the store in one transaction."""

    def __init__(self, write: Callable[[pa.Table, pa.Table | None], None], interval: float = 1.0) -> None:
        self.write, self.interval = write, interval
        self._lists: list[tuple] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: a flush returns once what it took is written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()
        self.written = 0
        self.failed = 0

    def log(self, request_id: str, user_id: str, items: np.ndarray, catalog_ids: pa.Array, scores: np.ndarray,
            propensities: np.ndarray, scenario: str | None, model: str, policy: str, draw: Draw | None = None
            ) -> None:
        """One shown list: ``items`` are indices into ``catalog_ids`` (the snapshot's ids as Arrow); ``draw``:
        how a stochastic policy drew it (kept in the ``slates`` table)."""
        entry = (request_id, time.time(), user_id, items, catalog_ids, scores, propensities, scenario, model, policy,
                 draw)
        with self._lock:
            self._lists.append(entry)

    def forget(self, user_id: str) -> None:
        """Drop a user's lists not yet written (their erasure deletes the written ones)."""
        with self._lock:
            self._lists = [e for e in self._lists if e[2] != user_id]

    def flush(self) -> None:
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            lists, self._lists = self._lists, []
        if not lists:
            return
        try:
            tables, slates = [], []
            by_catalog: dict[int, list[tuple]] = {}
            for e in lists:
                by_catalog.setdefault(id(e[4]), []).append(e)
            for group in by_catalog.values():
                tables.append(_table(group))
                drawn = [e for e in group if e[10] is not None]
                if drawn:
                    slates.append(_slates(drawn))
            self.write(tables[0] if len(tables) == 1 else pa.concat_tables(tables),
                       None if not slates else slates[0] if len(slates) == 1 else pa.concat_tables(slates))
            self.written += sum(len(e[3]) for e in lists)
        except Exception:  # noqa: BLE001  a failed log write must never fail serving; it is counted
            self.failed += sum(len(e[3]) for e in lists)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.flush()


def _table(lists: list[tuple]) -> pa.Table:
    """Rows of lists logged against one catalog, built from arrays (see the module docstring)."""
    sizes = np.fromiter((len(e[3]) for e in lists), np.int64, len(lists))
    per_list = pa.array(np.repeat(np.arange(len(lists)), sizes))
    items = np.concatenate([e[3] for e in lists]).astype(np.int32)
    item_ids = pa.DictionaryArray.from_arrays(pa.array(items), lists[0][4]).cast(pa.string())
    positions = np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in sizes.tolist()])

    def repeated(k: int, kind: pa.DataType) -> pa.Array:
        return pa.array([e[k] for e in lists], type=kind).take(per_list)

    return pa.table([repeated(0, pa.string()), repeated(1, pa.float64()), repeated(2, pa.string()), item_ids,
                     pa.array(positions), pa.array(np.concatenate([e[5] for e in lists]).astype(np.float64)),
                     pa.array(np.concatenate([e[6] for e in lists]).astype(np.float64)), repeated(7, pa.string()),
                     repeated(8, pa.string()), repeated(9, pa.string())], names=COLUMNS)


def _slates(lists: list[tuple]) -> pa.Table:
    """One row per drawn list: the draw's candidates and greedy list as catalog ids (see :class:`Draw`)."""
    ids = lists[0][4]

    def id_lists(arrays: list[np.ndarray]) -> pa.Array:
        sizes = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
        offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
        flat = np.concatenate(arrays).astype(np.int64) if len(arrays) else np.empty(0, np.int64)
        return pa.ListArray.from_arrays(offsets, ids.take(pa.array(flat)).cast(pa.string()))

    draws: list[Draw] = [e[10] for e in lists]
    sizes = np.fromiter((len(d.scores) for d in draws), np.int64, len(draws))
    scores = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)),
                                      pa.array(np.concatenate([d.scores for d in draws]).astype(np.float64)))
    return pa.table([pa.array([e[0] for e in lists], pa.string()), pa.array([e[1] for e in lists], pa.float64()),
                     pa.array([e[2] for e in lists], pa.string()), pa.array([d.kind for d in draws], pa.string()),
                     pa.array([d.epsilon for d in draws], pa.float64()),
                     pa.array([d.temperature for d in draws], pa.float64()),
                     pa.array([d.explored for d in draws], pa.bool_()), id_lists([d.candidates for d in draws]),
                     scores, id_lists([d.greedy for d in draws])], names=SLATE_COLUMNS)
