"""The embedded store: one DuckDB file holding items, users and events.

Every ingest runs in one transaction: a failure (or an interrupt) part-way leaves the earlier state as it
was. Events are keyed by (user, item, timestamp, event type), so re-ingesting the same events adds nothing;
a re-sent event with a new weight or context replaces the old one. Items and users are upserted by id.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pandas as pd

from mosaicrec.data.schema import ITEM_COLUMNS, USER_COLUMNS, Dataset, Interactions
from mosaicrec.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR PRIMARY KEY, title VARCHAR, texts JSON, image VARCHAR, audio VARCHAR, attributes JSON
);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR PRIMARY KEY, attributes JSON);
CREATE TABLE IF NOT EXISTS events (
    user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL, timestamp BIGINT NOT NULL,
    event_type VARCHAR NOT NULL, weight DOUBLE NOT NULL, context JSON,
    PRIMARY KEY (user_id, item_id, timestamp, event_type)
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value JSON);
"""


def default_store_path() -> Path:
    """``$MOSAICREC_HOME/store.duckdb``, by default under ``./.mosaicrec`` (git-ignored)."""
    return Path(os.environ.get("MOSAICREC_HOME", ".mosaicrec")) / "store.duckdb"


@dataclass
class IngestResult:
    """Row counts an ingest added (new ids/events) and updated (existing ones replaced)."""

    items_added: int = 0
    users_added: int = 0
    events_added: int = 0
    events_received: int = 0
    #: per row of the events given: ``True`` where the row stored a new event (the first row of a key not
    #: stored before); ``False`` for updates and repeats. Lets a caller that batched several requests
    #: into one ingest tell each what it added.
    events_new: np.ndarray | None = None

    def describe(self) -> str:
        return (f"{self.events_added} new events (of {self.events_received} received), "
                f"{self.items_added} new items, {self.users_added} new users")


class Store:
    """A DuckDB-backed store. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StoreError(f"no store at {self.path}; run `mosaicrec ingest` first")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from None
        if not read_only:
            self._sql(_SCHEMA)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _sql(self, query: str, params: list | None = None) -> list[tuple]:
        """Run one statement and drain its result (DuckDB 2 refuses new work while one is pending)."""
        return self.con.execute(query, params or []).fetchall()

    def _df(self, query: str, params: list | None = None) -> pd.DataFrame:
        return self.con.execute(query, params or []).df()

    # -- writing ----------------------------------------------------------------------------------------
    def ingest(self, *, events: pd.DataFrame | None = None, items: pd.DataFrame | None = None,
               users: pd.DataFrame | None = None, meta: dict | None = None) -> IngestResult:
        """Write canonical frames (as the loaders return them) in one transaction."""
        result = IngestResult()
        self._sql("BEGIN TRANSACTION")
        try:
            if items is not None and len(items):
                frame = _json_columns(items[ITEM_COLUMNS], ["texts", "attributes"])
                before = self._count("items")
                self.con.register("_items_in", frame)
                self._sql("""INSERT INTO items SELECT item_id, title, texts::JSON, image, audio,
                               attributes::JSON FROM _items_in
                               ON CONFLICT (item_id) DO UPDATE SET title = excluded.title,
                               texts = excluded.texts, image = excluded.image, audio = excluded.audio,
                               attributes = excluded.attributes""")
                self.con.unregister("_items_in")
                result.items_added = self._count("items") - before
            if users is not None and len(users):
                frame = _json_columns(users[USER_COLUMNS], ["attributes"])
                before = self._count("users")
                self.con.register("_users_in", frame)
                self._sql("""INSERT INTO users SELECT user_id, attributes::JSON FROM _users_in
                               ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes""")
                self.con.unregister("_users_in")
                result.users_added = self._count("users") - before
            if events is not None and len(events):
                # DuckDB refuses to update one row twice in one statement: keep the last of each key.
                keys = ["user_id", "item_id", "timestamp", "event_type"]
                frame = events.drop_duplicates(keys, keep="last")
                self.con.register("_events_in", frame)
                stored = self.con.execute(f"SELECT {', '.join(keys)} FROM _events_in SEMI JOIN events "
                                          f"USING ({', '.join(keys)})").df()
                self._sql("""INSERT INTO events SELECT user_id, item_id, timestamp, event_type, weight,
                               context::JSON FROM _events_in
                               ON CONFLICT (user_id, item_id, timestamp, event_type) DO UPDATE SET
                               weight = excluded.weight, context = excluded.context""")
                self.con.unregister("_events_in")
                given = pd.MultiIndex.from_frame(events[keys].astype({"timestamp": "int64"}))
                before = pd.MultiIndex.from_frame(stored[keys].astype({"timestamp": "int64"}))
                result.events_new = ~given.isin(before) & ~events.duplicated(keys, keep="first").to_numpy()
                result.events_added = int(result.events_new.sum())
                result.events_received = len(events)
            for key, value in (meta or {}).items():
                self._sql("INSERT INTO meta VALUES (?, ?::JSON) ON CONFLICT (key) DO UPDATE "
                            "SET value = excluded.value", [key, json.dumps(value)])
            self._sql("COMMIT")
        except BaseException:
            self._sql("ROLLBACK")
            raise
        return result

    def delete_user(self, user_id: str) -> int:
        """Erase a user's events and profile; returns the number of events removed."""
        self._sql("BEGIN TRANSACTION")
        try:
            n = self._sql("SELECT count(*) FROM events WHERE user_id = ?", [user_id])[0][0]
            self._sql("DELETE FROM events WHERE user_id = ?", [user_id])
            self._sql("DELETE FROM users WHERE user_id = ?", [user_id])
            self._sql("COMMIT")
        except BaseException:
            self._sql("ROLLBACK")
            raise
        return int(n)

    # -- reading ----------------------------------------------------------------------------------------
    def _count(self, table: str) -> int:
        return int(self._sql(f"SELECT count(*) FROM {table}")[0][0])

    def counts(self) -> dict[str, int]:
        return {t: self._count(t) for t in ("items", "users", "events")}

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._sql("SELECT key, value FROM meta")}

    def load_dataset(self, name: str | None = None) -> Dataset:
        """Everything in the store as a :class:`Dataset`.

        The item id map is every catalogued item plus any item seen only in events, sorted by id, so that
        items without events (cold items) are part of the catalog; likewise for users.
        """
        items = self._df("""
            SELECT ids.item_id, i.title, i.texts, i.image, i.audio, i.attributes
            FROM (SELECT item_id FROM items UNION SELECT DISTINCT item_id FROM events) ids
            LEFT JOIN items i USING (item_id) ORDER BY ids.item_id""")
        users = self._df("""
            SELECT ids.user_id, u.attributes
            FROM (SELECT user_id FROM users UNION SELECT DISTINCT user_id FROM events) ids
            LEFT JOIN users u USING (user_id) ORDER BY ids.user_id""")
        ev = self._df("""
            SELECT user_id, item_id, timestamp, event_type, weight, context FROM events
            ORDER BY timestamp, user_id, item_id, event_type""")
        for col in ("texts", "attributes"):
            items[col] = [json.loads(v) if isinstance(v, str) else {} for v in items[col]]
        items["title"] = items["title"].fillna("")
        items = items.replace({np.nan: None})
        users["attributes"] = [json.loads(v) if isinstance(v, str) else {} for v in users["attributes"]]
        meta = self.meta()
        interactions = events_to_interactions(ev, items["item_id"].to_numpy(object),
                                              users["user_id"].to_numpy(object))
        scale = meta.get("rating_scale")
        return Dataset(name=name or meta.get("name", self.path.stem), interactions=interactions,
                       items=items[ITEM_COLUMNS], users=users[USER_COLUMNS],
                       rating_scale=tuple(scale) if scale else None)


def _json_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for c in columns:
        frame[c] = [json.dumps(v or {}, ensure_ascii=False, sort_keys=True) for v in frame[c]]
    return frame


def events_to_interactions(events: pd.DataFrame, item_ids: np.ndarray,
                           user_ids: np.ndarray) -> Interactions:
    """Canonical events → :class:`Interactions` over the given id maps (which must cover every event)."""
    item_pos = pd.Index(item_ids).get_indexer(events["item_id"])
    user_pos = pd.Index(user_ids).get_indexer(events["user_id"])
    if (item_pos < 0).any() or (user_pos < 0).any():
        raise StoreError("events reference ids outside the id maps")
    context = {}
    if "context" in events.columns and len(events):
        parsed = [json.loads(c) if isinstance(c, str) else (c or {}) for c in events["context"]]
        keys = sorted({k for p in parsed for k in p})
        context = {k: np.array([p.get(k, "") for p in parsed], dtype=object) for k in keys}
    return Interactions(
        user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=object),
        users=user_pos.astype(np.int32), items=item_pos.astype(np.int32),
        weights=events["weight"].to_numpy(np.float32),
        timestamps=events["timestamp"].to_numpy(np.int64),
        event_types=events["event_type"].to_numpy(object) if "event_type" in events else None,
        context=context,
    )
