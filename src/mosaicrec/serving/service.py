"""The serving core, independent of HTTP: the one pipeline over an immutable snapshot and the live state.

A recommendation is one run of :class:`~mosaicrec.ranking.pipeline.Pipeline` (candidates → filters → the
user's rules → selection → explanation → the impression log) over the current
:class:`~mosaicrec.ranking.snapshot.Snapshot`; the CLI's lists and exports run the same pipeline.

Writes: **events** go to the store first (durable before the call returns; concurrent calls share one
commit), then to the live state; a user with events the model has not trained on is folded in from their
live likes, so the next list reflects them. Only likes (weight ≥ the threshold the model was trained with)
are folded in and cited; a dislike removes the item from the user's lists. **New or changed items** are
encoded before anything is written (422 with the reason when their media cannot be), then stored and placed
by content. **Erasure** removes every event of the user from the store and memory and leaves a tombstone the
store and every later start honour. **Reloads** build the new snapshot beside the old one and swap it.

Model calls are serialised by one lock (the scorer's, :class:`~mosaicrec.ranking.personal.Scorer`).
Snapshot changes are serialised by another; reads never wait for a write.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mosaicrec.data.content import ItemContent
from mosaicrec.data.kg import KnowledgeGraph
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.explore import ExploreConfig, Exploration
from mosaicrec.ranking.lists import Entry, ItemList, Recommended
from mosaicrec.ranking.live import LiveState
from mosaicrec.ranking.personal import Scorer
from mosaicrec.ranking.pipeline import Pipeline, Reasons, Request
from mosaicrec.ranking.reasons import KGIndex
from mosaicrec.ranking.retrieval import warm_top_k
from mosaicrec.ranking.snapshot import Catalog, ContentView, ModelView, Snapshot, make_snapshot
from mosaicrec.serving.bandit import STATE_NAME as BANDIT_STATE
from mosaicrec.serving.bandit import BanditRuntime, BanditServing
from mosaicrec.serving.content import ContentNotReady, ContentReads
from mosaicrec.serving.impressions import ImpressionLog
from mosaicrec.serving.media import MediaPolicy, MediaRejected
from mosaicrec.serving.reloads import ModelRejected, ModelSwaps
from mosaicrec.serving.writes import GroupCommit, ItemMode, patched, rewards_of

__all__ = ["Conflict", "ContentNotReady", "MediaRejected", "ModelRejected", "Service"]


class Conflict(MosaicError):
    """The request contradicts the stored state (an existing id for create, an erased user; 409)."""


class Service(ModelSwaps):
    """Recommendations, similar items, search, and the write paths, over one trained model."""

    def __init__(self, model: BaseRecommender, store_path: str | Path, content: ItemContent | None = None, *,
                 info: TrainingInfo | None = None, positive_threshold: float | None = None,
                 retrieval: str = "auto", ann_min_items: int = 50_000, exact_below: int = 20_000,
                 media: MediaPolicy | None = None, model_root: str | Path | None = None,
                 read_only: bool = False, log_impressions: bool = True,
                 bandit: BanditServing | None = None, explore: ExploreConfig | None = None,
                 kg: KnowledgeGraph | None = None,
                 index_dir: str | Path | None = None, store: Store | None = None, replication=None,
                 catalog: pd.DataFrame | None = None) -> None:
        """``retrieval``: ``exact`` scores every item; ``ann`` uses HNSW indexes over the model's item
        vectors (factor and neural models) and over the fused content (similar items); ``auto`` picks ANN
        from ``ann_min_items`` items on. ``info`` is the model's training record (threshold, encoders,
        when its data was read); ``positive_threshold`` overrides its threshold. ``read_only`` serves
        from a store opened for reading (the CLI's lists; writes are refused). ``bandit`` lets a contextual
        bandit pick the lists of some requests from the model's candidates and learn from posted rewards
        (:mod:`mosaicrec.serving.bandit`); ``explore`` draws some lists at random from the model's own
        scores (ε-greedy or Plackett–Luce, :mod:`mosaicrec.ranking.explore`), logged with each item's
        probability at its position for off-policy evaluation. ``kg``, an item knowledge graph over the catalog
        (:func:`mosaicrec.data.kg.load_item_kg`), adds to each explanation the path joining the recommended
        item to the liked item it cites ("you liked X; both are directed by Y"). ``index_dir``: where ANN
        indexes are saved and mapped from at the next start (:class:`~mosaicrec.ranking.ann.InnerProductIndex`);
        ``None`` builds them at every start. ``store`` and ``replication``: a replica's store (run by the
        replicas' one writer) and what tells the other replicas of its writes
        (:mod:`mosaicrec.serving.replication`). ``catalog``: the store's items when the caller has read them
        already (:meth:`~mosaicrec.data.store.Store.catalog`; a large catalog takes a second to read)."""
        if retrieval not in ("auto", "exact", "ann"):
            raise MosaicError(f"retrieval must be auto, exact or ann, not {retrieval!r}")
        self.info = info or TrainingInfo()
        threshold = positive_threshold if positive_threshold is not None else self.info.threshold
        self.info = self.info.model_copy(update={"threshold": threshold})
        self.store_path = Path(store_path)
        self.retrieval_mode, self.ann_min_items, self.exact_below = retrieval, ann_min_items, exact_below
        self.media = media or MediaPolicy(None)
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.model_root = Path(os.path.realpath(model_root)) if model_root is not None else None
        self.read_only = read_only
        self.scorer = Scorer()
        self.model_lock = self.scorer.lock
        self._writes = threading.RLock()  # snapshot changes (items, content, reloads), one at a time
        self._store_lock = threading.Lock()  # the DuckDB connection, used by one thread at a time
        self._counts_lock = threading.Lock()
        self._events = GroupCommit(self._write_events)
        self.content = ContentReads(lambda: self.info, self.model_lock, exact_below)
        self.started = time.time()
        self.reloads = 0
        # One connection for the service's life: opening DuckDB per write costs ~100 ms.
        self.store = store if store is not None else Store(self.store_path, read_only=read_only)
        self.replication = replication
        self.live = LiveState(threshold)
        self.live.load(self.store.events_frame(), self.store.erasures())
        self._snap = self._first_snapshot(model, content, catalog)
        warm_top_k()  # compiled now (seconds on a fresh install), not inside the first requests
        self.live.block_erased(self.info.data_as_of)
        self.live.refresh_changed(self._snap.view.users, self._snap.view.item_index, model._require_fitted())
        self.impressions = None if read_only or not log_impressions else ImpressionLog(self._write_impressions)
        self.bandit = None
        if bandit is not None:
            if replication is not None:
                raise MosaicError("a bandit learns in one process; it cannot run with replicas")
            if read_only:
                raise MosaicError("a bandit learns from rewards; it needs a writable store")
            self.bandit = BanditRuntime(bandit, self.store.load_state(BANDIT_STATE))
        if explore is not None and bandit is not None:
            raise MosaicError("choose one exploring policy: a bandit or --explore, not both")
        self.exploration = Exploration(explore) if explore is not None else None
        self.feedback = {"events": 0, "naming_a_list": 0}
        self.kg = KGIndex(kg) if kg is not None else None
        self.pipeline = Pipeline(self.live, self.scorer, explorer=self.bandit or self.exploration, kg=self.kg,
                                 log=self._log if self.impressions is not None else None)
        gc.freeze()  # see _install

    # -- snapshots --------------------------------------------------------------------------------------
    def _first_snapshot(self, model: BaseRecommender, content: ItemContent | None,
                        catalog: pd.DataFrame | None) -> Snapshot:
        """The catalog in serving order (the model's items, then the store's others) with its content."""
        catalog = self.store.catalog() if catalog is None else catalog
        view = self._model_view(model, self.info, len(catalog))
        model_items = [str(i) for i in model.item_ids]
        known = set(model_items)
        stored = catalog["item_id"].astype(str).to_numpy(object).tolist()
        titles = dict(zip(stored, catalog["title"].to_numpy(object).tolist()))
        attrs = dict(zip(stored, catalog["attributes"].to_numpy(object).tolist()))
        ids = model_items + [i for i in stored if i not in known]
        cat = Catalog.build(ids, [str(titles.get(i) or i) for i in ids], [dict(attrs.get(i) or {}) for i in ids])
        cview = ContentView.build(content, cat.ids, self._use_ann(len(cat)), self.index_dir) \
            if content is not None else None
        if cview is not None:
            self.content.status = "ready"
        return make_snapshot(0, view, cat, cview, self.live.popularity(), self._use_ann(len(cat)))

    def _use_ann(self, n_items: int) -> bool:
        return self.retrieval_mode == "ann" or (self.retrieval_mode == "auto" and n_items >= self.ann_min_items)

    def _model_view(self, model: BaseRecommender, info: TrainingInfo, n_catalog: int) -> ModelView:
        use_ann = self._use_ann(max(n_catalog, len(model.item_ids)))
        if self.retrieval_mode == "ann" and model.item_factors() is None:
            raise NotSupportedError(f"{model.name} has no item vectors to index; use retrieval=exact")
        return ModelView.build(model, info, use_ann, self.exact_below, self.index_dir)

    def _install(self, view: ModelView | None = None, catalog: Catalog | None = None,
                 content: ContentView | None | Literal["keep"] = "keep") -> Snapshot:
        """Build the next snapshot from the current one with some parts replaced, and swap it in. Call with
        ``self._writes`` held."""
        old = self._snap
        view = view or old.view
        catalog = catalog or old.catalog
        cview = old.content if content == "keep" else content
        snap = make_snapshot(old.version + 1, view, catalog, cview, self.live.popularity(),
                             self._use_ann(len(catalog)))
        self._snap = snap  # one reference assignment: a request sees the old snapshot or the new one
        # The catalog and live state are hundreds of thousands of long-lived objects; frozen, the cyclic
        # collector never walks them again in a full collection (a pause of every request in flight).
        gc.freeze()
        return snap

    @property
    def snapshot(self) -> Snapshot:
        return self._snap

    @property
    def model(self) -> BaseRecommender:
        return self._snap.view.model

    @property
    def retrieval(self) -> str:
        return "ann" if self._snap.use_ann and self._snap.view.rows is not None else "exact"

    @property
    def threshold(self) -> float | None:
        return self.info.threshold

    @property
    def content_status(self) -> str:
        return self.content.status

    @content_status.setter
    def content_status(self, value: str) -> None:
        self.content.status = value

    def listing(self) -> Listing:
        """A copy of what the pipeline reads now (model, catalog, content, every user's events), for
        listing users elsewhere: an export in this process or on Ray workers."""
        import copy

        snap = self._snap
        content = snap.content.content if snap.content is not None else None
        with self.live.lock:
            live = copy.deepcopy(self.live)
        return Listing(snap.view.model, self.info, snap.catalog, content, live)

    # -- reads ------------------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  diversity: float | None = None, filters: dict[str, Any] | None = None,
                  exclude_seen: bool = True, scenario: str | None = None,
                  request_id: str | None = None, reasons: Reasons = "content") -> Recommended:
        """Top-``k`` for a user by the one pipeline (:class:`~mosaicrec.ranking.pipeline.Request` says what
        each argument does). A user with nothing to go on gets the popular items (``cold_start``)."""
        return self.pipeline.run(self._snap, Request(user_id, k, tuple(exclude or ()), diversity, filters or {},
                                                     exclude_seen, scenario, request_id, reasons))

    def run(self, request: Request) -> Recommended:
        """One :class:`~mosaicrec.ranking.pipeline.Request` through the pipeline over the current snapshot."""
        return self.pipeline.run(self._snap, request)

    def user_scores(self, user_id: str, scenario: str | None = None, snap: Snapshot | None = None) -> np.ndarray:
        """The user's scores over every catalog item (``-inf`` where none can be given); the popular
        items' counts for a user with nothing to go on."""
        return self.pipeline.scores(snap or self._snap, user_id, scenario)

    def similar(self, item_id: str, k: int = 10, modality: str | None = None) -> list[Entry]:
        """Items most like ``item_id`` by fused content, or by one modality."""
        snap = self._snap
        return self.content.similar(snap, item_id, k, modality).entries(snap.catalog)

    def search(self, query: str, k: int = 10, user_id: str | None = None) -> list[Entry]:
        """Items whose content is nearest to a natural-language query (see
        :meth:`~mosaicrec.serving.content.ContentReads.search`); with ``user_id``, ties in meaning are
        broken towards the user's taste."""
        snap = self._snap
        taste = self.pipeline.scores(snap, user_id) if user_id is not None else None
        return self.content.search(snap, query, k, taste).entries(snap.catalog)

    def item(self, item_id: str) -> dict[str, Any]:
        """The stored item (canonical fields)."""
        rows = self.items(item_id)
        if not len(rows):
            raise UnknownItemError(f"unknown item {item_id!r}")
        return rows.iloc[0].to_dict()

    def items(self, *item_ids: str) -> pd.DataFrame:
        """The stored rows of these items (canonical fields; unknown ids are absent)."""
        with self._store_lock:
            return self.store.items(list(item_ids))

    # -- writes -----------------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.read_only:
            raise MosaicError("this service reads a store opened read-only; it cannot write")

    def add_events(self, events: pd.DataFrame) -> int:
        """Write events (canonical frame: user_id, item_id, timestamp, event_type, weight, context) to the
        store, then to the live state; returns how many were new. Unknown items, and events of an erased
        user dated at or before the erasure, are refused before anything is written. Concurrent calls
        share one transaction (group commit): each returns once its events are durable."""
        self._writable()
        index = self._snap.catalog.index
        unknown = sorted({i for i in events["item_id"].astype(str).unique() if i not in index})
        if unknown:
            raise UnknownItemError(f"unknown item {unknown[0]!r} in events ({len(unknown)} unknown); "
                                   "add items with POST /items first")
        erased = self.live.erased
        if erased:
            at = events["user_id"].astype(str).map(erased)
            stale = at.notna() & (events["timestamp"].astype("int64") <= at.fillna(-1))
            if stale.any():
                user = str(events.loc[stale.idxmax(), "user_id"])
                raise Conflict(f"user {user!r} was erased; events dated at or before the erasure are refused "
                               "(a later event starts a new history)")
        added = self._events.submit(events)
        rewards = rewards_of(events, self._snap.catalog.index, self.info.threshold)
        with self._counts_lock:
            self.feedback["events"] += len(events)
            self.feedback["naming_a_list"] += len(rewards)
        if self.bandit is not None:
            if rewards and self.bandit.reward(rewards):
                state = self.bandit.state()
                with self._store_lock:
                    self.store.save_state(BANDIT_STATE, state)
        return added

    def _write_events(self, events: pd.DataFrame) -> np.ndarray:
        """One transaction for a group of calls' events; then the live state. Per row: new or not."""
        with self._store_lock:
            result = self.store.ingest(events=events)
        self.live.apply(events)
        if self.replication is not None:
            self.replication.events(events)
        return result.events_new

    def add_items(self, items: pd.DataFrame, mode: ItemMode = "create") -> list[str]:
        """Add (``create``: refused if an id exists), replace (``replace``) or partly update (``patch``:
        given fields replace, ``texts``/``attributes`` merge, a ``None`` in them removes the key) items.
        Content is encoded *first*: if any given text, image or audio cannot be encoded nothing is written
        and :class:`MediaRejected` names the item and reason. Then the store, then a new snapshot in which
        the items are recommendable by content (no retraining)."""
        self._writable()
        ids = items["item_id"].astype(str).tolist()
        if len(set(ids)) != len(ids):
            raise MosaicError("an item id appears twice in one request")
        with self._writes:
            with self._store_lock:
                stored = self.store.items(ids)
            have = set(stored["item_id"].astype(str))
            if mode == "create" and have:
                raise Conflict(f"item {sorted(have)[0]!r} exists; replace it with PUT /items/{{id}} or change "
                               "fields with PATCH /items/{id}")
            if mode == "patch":
                missing = [i for i in ids if i not in have]
                if missing:
                    raise UnknownItemError(f"unknown item {missing[0]!r}: PATCH changes existing items")
                items = patched(stored, items)
            self._commit_items(items, self._encode_new(items))
        return ids

    def _encode_new(self, items: pd.DataFrame) -> ItemContent | None:
        """New items' content by the served content's encoders; nothing is written if any cannot be."""
        snap = self._snap
        if snap.content is None or not snap.content.content.modalities:
            if self.content.status == "encoding":
                raise ContentNotReady("the catalog's content is being encoded in the background; add items "
                                      "once it is ready")
            return None
        from mosaicrec.encoders import encode_items
        from mosaicrec.encoders.stage import part_of

        encoders = {}
        for m in snap.content.content.modalities:  # a video's parts are made by the video's encoder
            whole = part_of(m, snap.content.content.sources.get(m, ""))
            name = whole[0] if whole else m
            if name not in encoders:
                encoders[name] = self.content.encoder(name, snap.content, parts=whole is not None)
        with self.model_lock:
            encoded = encode_items(items, encoders, progress=False, text_fields=self.info.text_fields,
                                   fields=self.info.fields)
        failed = encoded.failures()
        if len(failed):
            first = failed.iloc[0]
            raise MediaRejected(f"item {first['item_id']!r}: {first['name']} content rejected "
                                f"({self.media.scrub(str(first['reason']))}); {len(failed)} failure(s), "
                                "nothing was added")
        return encoded.content

    def install_items(self, items: pd.DataFrame, content: ItemContent | None = None) -> list[str]:
        """Store items whose content is already encoded (``content``, any order) and serve them: the write
        half of :meth:`add_items`, for vectors made elsewhere (a notebook, another encoder run)."""
        self._writable()
        with self._writes:
            self._commit_items(items, content)
        return items["item_id"].astype(str).tolist()

    def _commit_items(self, items: pd.DataFrame, content: ItemContent | None) -> None:
        """Write item rows, then a snapshot with them (call with ``self._writes`` held)."""
        with self._store_lock:
            self.store.ingest(items=items)
        self._place_items(items, content)
        if self.replication is not None:
            self.replication.items(items, content)

    def apply_items(self, items: pd.DataFrame, content: ItemContent | None) -> None:
        """Serve items another replica wrote (and encoded): a snapshot with them, nothing written."""
        with self._writes:
            self._place_items(items, content)

    def _place_items(self, items: pd.DataFrame, content: ItemContent | None) -> None:
        snap = self._snap
        ids = items["item_id"].astype(str).tolist()
        catalog = snap.catalog.with_rows(items)
        cview = snap.content
        if content is not None and cview is not None:
            rows = [catalog.index[i] for i in ids]
            cview = cview.with_rows(catalog.ids, rows, content.align(np.array(ids, dtype=object)))
        elif content is not None:
            cview = ContentView.build(content, catalog.ids, self._use_ann(len(catalog)), self.index_dir)
        self._install(catalog=catalog, content=cview)

    def delete_user(self, user_id: str) -> int:
        """Erase the user: every event (any weight), profile and impression in the store, their live state,
        and their model row from now on (a tombstone the store keeps). Returns the events removed."""
        self._writable()
        known = (user_id in self._snap.view.users or user_id in self.live.users or user_id in self.live.erased)
        with self._store_lock:
            known = known or self.store.has_user(user_id)
            if not known:
                raise UnknownUserError(f"unknown user {user_id!r}")
            if self.impressions is not None:
                self.impressions.forget(user_id)
            at = int(time.time())
            n = self.store.delete_user(user_id, at)
        self.forget_user(user_id, at)
        if self.replication is not None:
            self.replication.erase(user_id, at)
        return n

    def forget_user(self, user_id: str, at: int) -> None:
        """Drop an erased user from memory (their store rows are gone already)."""
        if self.impressions is not None:
            self.impressions.forget(user_id)
        self.live.erase(user_id, at)
        self.scorer.forget(user_id)

    # -- content and models -----------------------------------------------------------------------------
    def set_content(self, content: ItemContent | None) -> None:
        """Serve ``content`` (any catalog order; items it lacks have none) from the next request on."""
        with self._writes:
            snap = self._snap
            cview = ContentView.build(content, snap.catalog.ids, self._use_ann(len(snap.catalog)), self.index_dir) \
                if content is not None else None
            self._install(content=cview)
            self.content.status = "ready" if cview is not None else "none"

    # -- the log, snapshots of the store, shutdown and health -------------------------------------------
    def _log(self, request: Request, shown: ItemList, snap: Snapshot) -> None:
        self.impressions.log(request.request_id or "", request.user_id, shown.items, snap.catalog.arrow_ids,
                             shown.scores, shown.propensities, request.scenario, snap.view.model.name, shown.policy,
                             shown.draw)

    def _write_impressions(self, rows, slates=None) -> None:
        with self._store_lock:
            self.store.log_impressions(rows, slates)

    def export_snapshot(self, folder: str | Path, log: bool = False) -> dict:
        """A consistent Parquet snapshot of the store, for training (or, with ``log``, off-policy
        evaluation of the impression log) beside the running service."""
        if log and self.impressions is not None:
            self.impressions.flush()  # the lists served so far are in the snapshot
        with self._store_lock:
            return self.store.export_snapshot(folder, log=log)

    def close(self) -> None:
        """Flush the impression log and release the store (the server calls this on shutdown)."""
        if self.replication is not None:
            self.replication.close()
        if self.impressions is not None:
            self.impressions.close()
        with self._store_lock:
            self.store.close()

    def health(self) -> dict[str, Any]:
        snap = self._snap
        return {"model": snap.view.model.name, "retrieval": self.retrieval, "reloads": self.reloads,
                "snapshot": snap.version, "items": len(snap.catalog), "model_items": snap.n_model,
                "users": len(snap.view.users), "live_users": len(self.live.users),
                "content": snap.content.content.modalities if snap.content is not None else [],
                "content_status": self.content.status, "threshold": self.info.threshold,
                "uptime_s": round(time.time() - self.started, 1),
                "feedback": dict(self.feedback),
                "explore": None if self.exploration is None else self.exploration.config.model_dump(),
                "bandit": None if self.bandit is None else {
                    "policy": self.bandit.name, "share": self.bandit.config.share, "restored": self.bandit.restored,
                    "rewards": self.bandit.rewards, "unmatched": self.bandit.unmatched,
                    "other_lists": self.bandit.other_lists, "updates": self.bandit.bandit.n_updates}}

