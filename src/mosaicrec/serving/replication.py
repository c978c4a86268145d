"""Replicas of one service: one writer, a change log, and a follower in each replica.

N replicas serve the same model over one store. DuckDB has one writer, so the store lives in one process,
the :class:`Writer` (a Ray actor): every replica reads and writes it through a :class:`RemoteStore`, which
has the methods of :class:`~mosaicrec.data.store.Store` that a service calls. Each write a replica makes
(events, items with their encoded content, an erasure) is also appended to the writer's **change log**;
every replica's :class:`Follower` long-polls the log and applies the changes other replicas made to its own
live state and snapshot, so a like posted to one replica changes the list another serves within
milliseconds (one Ray round trip), not at its next restart.

A **reload** is two-phase, so that replicas never serve two models for longer than a round trip: the
replica asked appends ``prepare``; every follower loads the folder and builds the new snapshot beside the
old one, and says so; when all have, the writer appends ``commit``, each swaps its snapshot (one
assignment) and says so, and the reload answers once all have; if any cannot load it, ``abort`` and the
old model goes on everywhere (a 422 to the caller).

The writer knows how many replicas follow (each registers at start); a replica that starts later (a
restart) reads the store as it is and follows from the log's current version.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError
from mosaicrec.serving.reloads import ModelRejected

log = logging.getLogger("mosaicrec.serving.replication")


@dataclass
class Change:
    """One entry of the change log: ``kind`` is events, items, erase, prepare, commit or abort."""

    version: int
    origin: str
    kind: str
    payload: Any = None


@dataclass
class _Reload:
    folder: str
    ready: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    installed: set[str] = field(default_factory=set)


class Writer:
    """The store's one writer and the change log (run as a Ray actor; its methods are the store's)."""

    def __init__(self, store_path: str, keep: int = 100_000) -> None:
        self.store = Store(store_path)
        self.log: list[Change] = []
        self.keep = keep
        self.version = 0
        self.replicas: set[str] = set()
        self.seen: dict[str, float] = {}  # when each replica last polled the log: the living ones
        self.model_dir: str | None = None  # the folder last committed (what a restarted replica loads)
        self._changed: asyncio.Condition | None = None
        self._reloads: dict[int, _Reload] = {}

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    # -- the store, as a Store ----------------------------------------------------------------------------
    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A :class:`Store` method (the actor's loop runs one at a time: DuckDB's one connection)."""
        if method not in RemoteStore.METHODS:
            raise MosaicError(f"the writer does not offer {method!r}")
        return getattr(self.store, method)(*args, **kwargs)

    # -- the change log -----------------------------------------------------------------------------------
    async def register(self, replica: str) -> dict[str, Any]:
        """A replica starts following: the version its state of the store is at, and the model to serve."""
        self.replicas.add(replica)
        self.seen[replica] = time.monotonic()
        return {"version": self.version, "model_dir": self.model_dir}

    async def leave(self, replica: str) -> None:
        self.replicas.discard(replica)
        self.seen.pop(replica, None)

    def _living(self) -> set[str]:
        """Replicas that polled the log in the last few seconds (one that died without leaving is not
        waited for: a reload would otherwise never complete)."""
        now = time.monotonic()
        return {r for r in self.replicas if now - self.seen.get(r, 0.0) < self.LIVENESS_S}

    LIVENESS_S = 5.0

    async def close(self) -> None:
        self.store.close()

    async def publish(self, origin: str, kind: str, payload: Any = None) -> int:
        cond = self._cond()
        async with cond:
            self.version += 1
            self.log.append(Change(self.version, origin, kind, payload))
            if len(self.log) > self.keep:
                del self.log[:len(self.log) - self.keep]
            cond.notify_all()
        return self.version

    async def wait(self, since: int, timeout: float = 1.0, replica: str | None = None) -> list[Change]:
        """The changes after ``since``, as soon as there is one (or none after ``timeout`` seconds)."""
        if replica is not None:
            self.seen[replica] = time.monotonic()
        cond = self._cond()
        async with cond:
            if self.version <= since:
                try:
                    await asyncio.wait_for(cond.wait_for(lambda: self.version > since), timeout)
                except TimeoutError:
                    return []
            if self.log and self.log[0].version > since + 1:
                raise MosaicError(f"the change log no longer holds version {since + 1}: restart this replica")
            return [c for c in self.log if c.version > since]

    async def reload(self, origin: str, folder: str, timeout: float = 120.0) -> dict[str, Any]:
        """Two-phase reload across the replicas (see the module)."""
        v = await self.publish(origin, "prepare", folder)
        state = self._reloads[v] = _Reload(folder)
        deadline = time.monotonic() + timeout
        while not state.failed and not self._living() <= state.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if state.failed or not self._living() <= state.ready:
            del self._reloads[v]
            await self.publish(origin, "abort", v)
            why = next(iter(state.failed.values()), f"not every replica was ready in {timeout:.0f} s")
            return {"ok": False, "error": why}
        committed = await self.publish(origin, "commit", v)
        self.model_dir = folder
        # answer once every replica serves it (a swap is one assignment: milliseconds after the commit)
        deadline = time.monotonic() + 10
        while not (state.ready & self._living()) <= state.installed and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        del self._reloads[v]
        return {"ok": True, "replicas": len(state.ready), "installed": len(state.installed), "version": committed}

    async def installed(self, version: int, replica: str) -> None:
        state = self._reloads.get(version)
        if state is not None:
            state.installed.add(replica)

    async def prepared(self, version: int, replica: str, error: str | None = None) -> None:
        state = self._reloads.get(version)
        if state is not None:
            if error is None:
                state.ready.add(replica)
            else:
                state.failed[replica] = error


class RemoteStore:
    """The methods of :class:`~mosaicrec.data.store.Store` a service calls, run by the :class:`Writer`."""

    METHODS = frozenset({"catalog", "events_frame", "erasures", "items", "ingest", "delete_user", "has_user",
                         "log_impressions", "save_state", "load_state", "export_snapshot", "counts"})

    def __init__(self, writer) -> None:
        self.writer = writer

    def __getattr__(self, method: str):
        if method not in self.METHODS:
            raise AttributeError(method)
        import ray

        return lambda *args, **kwargs: ray.get(self.writer.call.remote(method, *args, **kwargs))

    def close(self) -> None:
        """The writer's store stays open for the other replicas."""


class Replication:
    """What a replica's service tells the others (through the writer's log), and the follower that applies
    what they told it. ``service`` is set by :meth:`follow`."""

    _ids = itertools.count()

    def __init__(self, writer, name: str | None = None) -> None:
        import os

        self.writer = writer
        self.name = name or f"replica-{os.getpid()}-{next(self._ids)}"
        self.version = 0
        self.service = None
        self._prepared: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.writer, method).remote(*args))

    # -- what this replica tells the others ---------------------------------------------------------------
    def events(self, frame: pd.DataFrame) -> None:
        self._call("publish", self.name, "events", frame)

    def items(self, frame: pd.DataFrame, content: ItemContent | None) -> None:
        self._call("publish", self.name, "items", (frame, content))

    def erase(self, user_id: str, at: int) -> None:
        self._call("publish", self.name, "erase", (user_id, at))

    def reload(self, folder: str) -> dict[str, Any]:
        result = self._call("reload", self.name, folder)
        if not result["ok"]:
            raise ModelRejected(f"model_dir {folder!r}: {result['error']}")
        return result

    # -- what the others told it --------------------------------------------------------------------------
    def register(self) -> dict[str, Any]:
        """Join the writer's replicas: the version the store is at now (read the store after this)."""
        start = self._call("register", self.name)
        self.version = start["version"]
        return start

    def follow(self, service) -> None:
        """Apply the log's changes to ``service`` from now on, in a daemon thread."""
        self.service = service
        self._thread = threading.Thread(target=self._loop, name="follower", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        try:
            self._call("leave", self.name)
        except Exception:  # noqa: BLE001  the writer may be gone first at shutdown
            pass

    def _loop(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                changes = ray.get(self.writer.wait.remote(self.version, 1.0, self.name))
            except Exception as e:  # noqa: BLE001  the writer restarting: retry, keep serving meanwhile
                log.warning("follower: %s", e)
                time.sleep(0.5)
                continue
            for change in changes:
                try:
                    self.apply(change)
                except Exception:  # noqa: BLE001  one bad change must not stop the others
                    log.exception("follower: cannot apply change %s (%s)", change.version, change.kind)
                self.version = change.version

    def apply(self, change: Change) -> None:
        svc = self.service
        if change.kind == "prepare":
            self._prepare(change.version, change.payload)
        elif change.kind == "commit":
            prepared = self._prepared.pop(change.payload, None)
            if prepared is not None:
                svc.install_model(prepared)
                self._call("installed", change.payload, self.name)
        elif change.kind == "abort":
            self._prepared.pop(change.payload, None)
        elif change.origin == self.name:
            return  # this replica's own write is applied already
        elif change.kind == "events":
            svc.live.apply(change.payload)
        elif change.kind == "items":
            frame, content = change.payload
            svc.apply_items(frame, content)
        elif change.kind == "erase":
            svc.forget_user(*change.payload)

    def _prepare(self, version: int, folder: str) -> None:
        svc = self.service
        try:
            model, info = svc.load_model_dir(svc.resolve_model_dir(folder))
            self._prepared[version] = svc.prepare_model(model, info)
            error = None
        except MosaicError as e:
            error = str(e)
        self._call("prepared", version, self.name, error)


__all__ = ["Change", "RemoteStore", "Replication", "Writer"]
