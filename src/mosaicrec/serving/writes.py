"""The service's write paths' pieces: group commit of events, rewards for an exploring policy, and item
patches.

Events are written to the store first (durable before the call returns; concurrent calls share one commit),
then to the live state; rewards for lists an exploring policy chose (events whose context names the list's
``request_id``) teach it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from mosaicrec.data.schema import ITEM_COLUMNS, answered_lists

ItemMode = Literal["create", "replace", "patch"]


class GroupCommit:
    """Group commit: frames submitted concurrently are written in one transaction. A caller that finds no
    write in flight writes everything queued (its frame and any that arrived while the last write ran);
    the others wait for that write. A commit (an fsync) costs far more than the rows, so one commit for
    many requests multiplies throughput under load, while each call still returns only once its rows are
    durable. If a group fails, each frame is retried alone, so a bad frame fails only its own call."""

    def __init__(self, write: Callable[[pd.DataFrame], np.ndarray]) -> None:
        self.write = write  # frame -> per-row "new" flags
        self.cv = threading.Condition()
        self.queue: list[dict[str, Any]] = []
        self.busy = False

    def submit(self, frame: pd.DataFrame) -> int:
        """Write ``frame`` (with whatever else is queued); the number of its rows that were new."""
        ticket: dict[str, Any] = {"frame": frame, "done": False}
        with self.cv:
            self.queue.append(ticket)
            while self.busy and not ticket["done"]:
                self.cv.wait()
            if not ticket["done"]:
                self.busy, batch, self.queue = True, self.queue, []
        if not ticket["done"]:
            try:
                self._write_group(batch)
            finally:
                with self.cv:
                    for t in batch:
                        t["done"] = True
                    self.busy = False
                    self.cv.notify_all()
        if "error" in ticket:
            raise ticket["error"]
        return ticket["added"]

    def _write_group(self, batch: list[dict[str, Any]]) -> None:
        try:
            new = self.write(pd.concat([t["frame"] for t in batch], ignore_index=True))
            at = 0
            for t in batch:
                t["added"], at = int(new[at:at + len(t["frame"])].sum()), at + len(t["frame"])
        except Exception as e:
            if len(batch) == 1:
                batch[0]["error"] = e
                return
            for t in batch:  # the group failed as one transaction: find whose frame it was
                try:
                    t["added"] = int(self.write(t["frame"]).sum())
                except Exception as err:
                    t["error"] = err


def rewards_of(events: pd.DataFrame, index: dict[str, int], threshold: float | None
               ) -> list[tuple[str, str, int, float]]:
    """(request id, user id, catalog row, reward) of the events whose context names a served list's ``request_id``:
    reward 1 for a like (weight ≥ the threshold), 0 otherwise; events of unknown items are left out."""
    rids = answered_lists(events["context"])
    marked = np.array([r is not None for r in rids], bool)
    if not marked.any():
        return []
    rewards = []
    for rid, user, item, weight in zip(rids[marked], events.loc[marked, "user_id"].astype(str),
                                       events.loc[marked, "item_id"].astype(str),
                                       events.loc[marked, "weight"].astype(float)):
        if item in index:
            liked = weight >= threshold if threshold is not None else weight > 0
            rewards.append((rid, user, index[item], 1.0 if liked else 0.0))
    return rewards


def patched(stored: pd.DataFrame, patch: pd.DataFrame) -> pd.DataFrame:
    """Stored rows with a merge-patch applied (fields absent from the patch are ``...``: left as they are)."""
    base = {str(r["item_id"]): dict(r) for _, r in stored.iterrows()}
    out = []
    for _, p in patch.iterrows():
        row = dict(base[str(p["item_id"])])
        for key in ("title", "image", "audio", "video"):
            if p.get(key, ...) is not ...:
                row[key] = p[key]
        for key in ("texts", "attributes"):
            change = p.get(key, ...)
            if change is not ... and change is not None:
                merged = dict(row.get(key) or {})
                for k, v in change.items():
                    if v is None:
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                row[key] = merged
            elif change is None:
                row[key] = {}
        out.append(row)
    return pd.DataFrame(out, columns=ITEM_COLUMNS)
