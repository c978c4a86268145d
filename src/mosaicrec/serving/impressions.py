"""The impression log: every list the service shows, one row per shown item, kept in the store.

Rows carry the request id, user, item, position, score, the probability the item was shown with under the
policy that chose it (its propensity) and the scenario, so that a policy can later be measured off-line
on what was actually shown. A DuckDB commit costs ~10-20 ms, far more than a read request, so rows are
buffered and written by one background thread every ``interval`` seconds (and at shutdown): a crash can
lose the last interval of the log, never an event (events are written before their call returns).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

COLUMNS = ["request_id", "served_at", "user_id", "item_id", "position", "score", "propensity", "scenario",
           "model", "policy"]


class ImpressionLog:
    """Buffered writer of shown lists. ``write(frame)`` must write rows to the store (under its lock)."""

    def __init__(self, write: Callable[[pd.DataFrame], None], interval: float = 1.0) -> None:
        self.write, self.interval = write, interval
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()
        self.written = 0
        self.failed = 0

    def log(self, request_id: str, user_id: str, item_ids: list[str], scores: np.ndarray,
            propensities: np.ndarray, scenario: str | None, model: str, policy: str) -> None:
        now = time.time()
        rows = [(request_id, now, user_id, item, pos, float(score), float(p), scenario, model, policy)
                for pos, (item, score, p) in enumerate(zip(item_ids, scores.tolist(), propensities.tolist()),
                                                        start=1)]
        with self._lock:
            self._rows.extend(rows)

    def forget(self, user_id: str) -> None:
        """Drop a user's rows not yet written (their erasure deletes the written ones)."""
        with self._lock:
            self._rows = [r for r in self._rows if r[2] != user_id]

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                self.write(pd.DataFrame(rows, columns=COLUMNS))
                self.written += len(rows)
            except Exception:  # noqa: BLE001  a failed log write must never fail serving; it is counted
                self.failed += len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.flush()
