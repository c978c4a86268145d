"""The serving core, independent of HTTP: a pipeline over an immutable snapshot and the live state.

A recommendation is: take the current :class:`~mosaicrec.serving.snapshot.Snapshot` → the user's live
events (:mod:`~mosaicrec.serving.live`) → the allowed items (filters, exclusions, dislikes) → retrieval
(exact or HNSW, :mod:`mosaicrec.ranking.retrieval`), with items added since training scored through their
content proxies → selection (greedy or MMR, with each shown item's propensity) → explanations → the
impression log. A user with no likes (new, or erased) gets the popular items, flagged ``cold_start``.

Writes: **events** go to the store first (durable before the call returns; concurrent calls share one
commit), then to the live state; a user with events the model has not trained on is folded in from their
live likes, so the next list reflects them. Only likes (weight ≥ the threshold the model was trained with)
are folded in and cited; a dislike removes the item from the user's lists. **New or changed items** are
encoded before anything is written (422 with the reason when their media cannot be), then stored and placed
by content. **Erasure** removes every event of the user from the store and memory and leaves a tombstone the
store and every later start honour. **Reloads** build the new snapshot beside the old one and swap it.

Model calls are serialised by one lock: numba's workqueue threading layer (which the kernels use so that
torch keeps its threads) must not be entered from two threads at once. Snapshot changes are serialised by
another; reads never wait for a write.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mosaicrec.data.content import ItemContent
from mosaicrec.data.kg import KnowledgeGraph
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.fusion import cross_modal_map
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.query import Query
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.rerank import explain
from mosaicrec.ranking.retrieval import top_allowed, top_k
from mosaicrec.ranking.selection import Selection, greedy, mmr_select
from mosaicrec.serving.bandit import STATE_NAME as BANDIT_STATE
from mosaicrec.serving.bandit import BanditRuntime, BanditServing
from mosaicrec.serving.impressions import ImpressionLog
from mosaicrec.serving.live import LiveState, UserEvents, history_indices
from mosaicrec.serving.media import MediaPolicy, MediaRejected
from mosaicrec.serving.snapshot import Catalog, ContentView, ModelView, Snapshot, make_snapshot, normalise

__all__ = ["ContentNotReady", "Conflict", "GroupCommit", "MediaRejected", "ModelRejected", "Recommended",
           "RecommendResult", "Service"]


class ContentNotReady(MosaicError):
    """The route needs item content that is still being encoded (the API answers 503, retry later)."""


class Conflict(MosaicError):
    """The request contradicts the stored state (an existing id for create, an erased user; 409)."""


class ModelRejected(MosaicError):
    """A model folder that cannot be served here (broken, outside the model root, another catalog; 422)."""


@dataclass
class Recommended:
    item_id: str
    title: str
    score: float
    explanation: str | None = None
    because: str | None = None
    modality: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    kg_path: str | None = None


@dataclass
class RecommendResult:
    user_id: str
    request_id: str
    items: list[Recommended]
    cold_start: bool
    policy: str
    model: str
    scenario: str | None = None
    scenario_known: bool | None = None


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


ItemMode = Literal["create", "replace", "patch"]


class Service:
    """Recommendations, similar items, search, and the write paths, over one trained model."""

    MIN_PAIRS = 20  # catalog items having text and another modality before search maps text into it
    #: folded-in users kept (query vector or scores, per model and scenario) until their events change: a
    #: fold-in costs ~0.4 ms, and a user who pages or comes back asks again with the same history
    FOLD_CACHE = 100_000

    def __init__(self, model: BaseRecommender, store_path: str | Path, content: ItemContent | None = None, *,
                 info: TrainingInfo | None = None, positive_threshold: float | None = None,
                 retrieval: str = "auto", ann_min_items: int = 50_000, exact_below: int = 20_000,
                 media: MediaPolicy | None = None, model_root: str | Path | None = None,
                 read_only: bool = False, log_impressions: bool = True,
                 bandit: BanditServing | None = None, kg: KnowledgeGraph | None = None) -> None:
        """``retrieval``: ``exact`` scores every item; ``ann`` uses HNSW indexes over the model's item
        vectors (factor and neural models) and over the fused content (similar items); ``auto`` picks ANN
        from ``ann_min_items`` items on. ``info`` is the model's training record (threshold, encoders,
        when its data was read); ``positive_threshold`` overrides its threshold. ``read_only`` serves
        from a store opened for reading (the CLI's lists; writes are refused). ``bandit`` lets a contextual
        bandit pick the lists of some requests from the model's candidates and learn from posted rewards
        (:mod:`mosaicrec.serving.bandit`). ``kg``, an item knowledge graph over the catalog
        (:func:`mosaicrec.data.kg.load_item_kg`), adds to each explanation the path joining the recommended
        item to the liked item it cites ("you liked X; both are directed by Y")."""
        if retrieval not in ("auto", "exact", "ann"):
            raise MosaicError(f"retrieval must be auto, exact or ann, not {retrieval!r}")
        self.info = info or TrainingInfo()
        threshold = positive_threshold if positive_threshold is not None else self.info.threshold
        self.info = self.info.model_copy(update={"threshold": threshold})
        self.store_path = Path(store_path)
        self.retrieval_mode, self.ann_min_items, self.exact_below = retrieval, ann_min_items, exact_below
        self.media = media or MediaPolicy(None)
        self.model_root = Path(os.path.realpath(model_root)) if model_root is not None else None
        self.read_only = read_only
        self.model_lock = threading.RLock()
        self._writes = threading.RLock()  # snapshot changes (items, content, reloads), one at a time
        self._store_lock = threading.Lock()  # the DuckDB connection, used by one thread at a time
        self._events = GroupCommit(self._write_events)
        self._encoders: dict[str, Any] = {}
        self._folded: dict[str, tuple[tuple[int, str | None], tuple[str, Any], UserEvents]] = {}
        self.started = time.time()
        self.reloads = 0
        self.content_status = "none"
        # One connection for the service's life: opening DuckDB per write costs ~100 ms.
        self.store = Store(self.store_path, read_only=read_only)
        data = self.store.load_dataset()
        self.live = LiveState(threshold)
        ev = self.store._df("SELECT user_id, item_id, timestamp, weight FROM events")
        self.live.load(ev, self.store.erasures())
        catalog = data.items
        view = self._model_view(model, self.info, len(catalog))
        model_items = [str(i) for i in model.item_ids]
        known = set(model_items)
        titles = dict(zip(catalog["item_id"].astype(str), catalog["title"]))
        attrs = dict(zip(catalog["item_id"].astype(str), catalog["attributes"]))
        ids = model_items + [i for i in catalog["item_id"].astype(str) if i not in known]
        cat = Catalog.build(ids, [str(titles.get(i) or i) for i in ids], [dict(attrs.get(i) or {}) for i in ids])
        cview = ContentView.build(content, cat.ids, self._use_ann(len(cat))) if content is not None else None
        if cview is not None:
            self.content_status = "ready"
        self._snap = make_snapshot(0, view, cat, cview, self.live.popularity(), self._use_ann(len(cat)))
        self._blocked = self.live.blocked_rows(self.info.data_as_of)
        self.live.refresh_changed(view.users, view.item_index, model._require_fitted())
        self.impressions = None if read_only or not log_impressions else ImpressionLog(self._write_impressions)
        self.bandit = None
        if bandit is not None:
            if read_only:
                raise MosaicError("a bandit learns from rewards; it needs a writable store")
            self.bandit = BanditRuntime(bandit, self.store.load_state(BANDIT_STATE))
        self.kg = _KGIndex(kg) if kg is not None else None
        gc.freeze()  # see _install

    # -- snapshot building ------------------------------------------------------------------------------
    def _use_ann(self, n_items: int) -> bool:
        return self.retrieval_mode == "ann" or (self.retrieval_mode == "auto" and n_items >= self.ann_min_items)

    def _model_view(self, model: BaseRecommender, info: TrainingInfo, n_catalog: int) -> ModelView:
        use_ann = self._use_ann(max(n_catalog, len(model.item_ids)))
        if self.retrieval_mode == "ann" and model.item_factors() is None:
            raise NotSupportedError(f"{model.name} has no item vectors to index; use retrieval=exact")
        return ModelView.build(model, info, use_ann, self.exact_below)

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

    # -- reads ------------------------------------------------------------------------------------------
    def check_scenario(self, scenario: str | None, model: BaseRecommender | None = None) -> bool | None:
        """Whether the served model knows ``scenario`` (``None`` without one). A context model serves a
        value it never saw with its shared scores; a context-free model refuses any scenario."""
        return None if scenario is None else (model or self.model).knows_context(scenario, "scenario")

    def _trained_row(self, view: ModelView, user_id: str) -> int | None:
        row = view.users.get(user_id)
        return None if row is None or user_id in self._blocked else row

    def _personal(self, snap: Snapshot, user_id: str, ev: UserEvents, hist: np.ndarray, scenario: str | None
                  ) -> tuple[str, Any] | None:
        """How to score this user: ``("query", q)`` (a factor model's ``[q_u, 1]``), ``("scores", s)`` (the
        model's scores of its items), or ``None`` (nothing to go on: cold start)."""
        view = snap.view
        model = view.model
        row = self._trained_row(view, user_id)
        fold = row is None or user_id in self.live.changed
        model_hist = hist[hist < view.n_items]
        if fold and not len(model_hist) and row is None:
            return None
        factors = view.rows is not None
        if not fold and factors:  # a trained user's row: plain numpy, no numba kernel, no lock needed
            q = model.query_factors(Query(users=np.array([row]), context=scenario))[0]
            return "query", np.append(q, np.float32(1.0)).astype(np.float32)
        if fold and len(model_hist):
            key = (id(view), scenario)
            hit = self._folded.get(user_id)
            if hit is not None and hit[0] == key and hit[2] is ev:  # same model, scenario and history
                return hit[1]
        with self.model_lock:
            if fold and len(model_hist):
                try:
                    x = _history_row(model_hist, view.n_items)
                    # with the events' times: a sequential model reads them as the order of the history,
                    # a time-window popularity prior counts "now" from them
                    times = _time_row(x, ev, snap.catalog.index)
                    if factors:
                        q = model.query_factors(Query(history=x, timestamps=times, context=scenario))[0]
                        how = "query", np.append(q, np.float32(1.0)).astype(np.float32)
                    else:
                        how = "scores", model.score(Query(history=x, timestamps=times, context=scenario))[0]
                    if len(self._folded) >= self.FOLD_CACHE:
                        self._folded.clear()
                    self._folded[user_id] = (key, how, ev)
                    return how
                except NotSupportedError:
                    if row is None:
                        return None  # this model cannot place a user it never saw: the popular list
            if row is None:
                return None
            if factors:
                q = model.query_factors(Query(users=np.array([row]), context=scenario))[0]
                return "query", np.append(q, np.float32(1.0)).astype(np.float32)
            return "scores", model.score(np.array([row]), context=scenario)[0]

    def _candidates(self, snap: Snapshot, how: tuple[str, Any], n: int, allowed: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best allowed catalog items for a personal query or score vector, best first: model items
        from the retriever (or the scores), items added since training through their proxies, merged."""
        kind, value = how
        n_model, n_cat = snap.n_model, len(snap.catalog)
        extra = allowed[n_model:] & snap.proxies.placed if n_cat > n_model else None
        if kind == "query":
            ids, vals = snap.view.retriever.top(value, n, allowed[:n_model])
            if extra is not None and extra.any():
                cand = np.flatnonzero(extra)
                ids = np.concatenate([ids, cand + n_model])
                vals = np.concatenate([vals, snap.proxies.rows[cand] @ value])
                order = np.argsort(-vals, kind="stable")[:n]
                ids, vals = ids[order], vals[order]
            return ids, vals.astype(np.float32)
        full = np.full(n_cat, -np.inf, np.float32)
        full[:n_model] = value
        if extra is not None and extra.any():
            full[n_model:] = np.where(snap.proxies.placed, snap.proxies.weights @ value, -np.inf)
        return top_allowed(full, n, allowed)

    def user_scores(self, user_id: str, scenario: str | None = None, snap: Snapshot | None = None) -> np.ndarray:
        """The user's scores over every catalog item (``-inf`` where none can be given); the popular
        items' counts for a user with nothing to go on."""
        snap = snap or self._snap
        ev = self.live.get(user_id)
        hist = history_indices(ev.positives, snap.catalog.index)
        how = self._personal(snap, user_id, ev, hist, scenario)
        if how is None:
            return snap.popularity.copy()
        kind, value = how
        n_model = snap.n_model
        if kind == "query":
            return snap.rows_all @ value if snap.rows_all is not None else snap.view.rows @ value
        full = np.full(len(snap.catalog), -np.inf, np.float32)
        full[:n_model] = value
        if len(snap.catalog) > n_model:
            full[n_model:] = np.where(snap.proxies.placed, snap.proxies.weights @ value, -np.inf)
        return full

    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  diversity: float | None = None, filters: dict[str, Any] | None = None,
                  exclude_seen: bool = True, scenario: str | None = None,
                  request_id: str | None = None, reasons: str = "content") -> RecommendResult:
        """Top-``k`` for a user. Filters (``attribute: value``, matching a value or a member of a list
        attribute) and exclusions are applied before the top-k, so ``k`` items come back whenever ``k``
        items pass. Items the user disliked never come back (``include_seen`` or not). ``diversity`` in
        (0, 1] re-ranks with MMR at λ = 1 − diversity. ``scenario`` is the request's value of a context
        model's context column. A user with nothing to go on gets the popular items (``cold_start``).
        ``reasons``: ``content`` cites the liked item closest in content; ``model`` the liked item whose
        removal lowers the item's score most, by the model's own fold-in (:mod:`mosaicrec.ranking.reasons`;
        about |history| + 1 fold-ins more per request), falling back to content where the model cannot
        tell (an item it never trained on, a model without fold-in)."""
        if reasons not in ("content", "model"):
            raise MosaicError(f"reasons must be content or model, not {reasons!r}")
        snap = self._snap
        known = self.check_scenario(scenario, snap.view.model)
        ev = self.live.get(user_id)
        cat = snap.catalog
        allowed = cat.filter.mask(filters) if filters else np.ones(len(cat), bool)
        for item in (*ev.negatives, *(ev.positives if exclude_seen else ()), *(exclude or ())):
            at = cat.index.get(item)
            if at is not None:
                allowed[at] = False
        hist = history_indices(ev.positives, cat.index)
        diverse = bool(diversity) and snap.content is not None
        n = max(5 * k, 50) if diverse else k
        rid = request_id or uuid.uuid4().hex
        explore = (self.bandit is not None and snap.content is not None and not diverse
                   and self.bandit.serves(rid, scenario))
        if explore:
            n = max(n, self.bandit.config.candidates)
        how = self._personal(snap, user_id, ev, hist, scenario)
        if how is None:
            ids, scores = top_allowed(snap.popularity, n, allowed)
            policy = "popular"
        else:
            ids, scores = self._candidates(snap, how, n, allowed)
            policy = "greedy"
        if explore and len(ids):
            vecs = snap.content.vectors
            profile = vecs[hist[-200:]].mean(axis=0) if len(hist) else None
            sel = self.bandit.choose(rid, ids, scores, vecs[ids], profile, k)
        elif diverse:
            sel = mmr_select(ids, scores, snap.content.vectors, k, 1.0 - diversity)
            sel = Selection(sel.items, sel.scores, sel.propensities, f"{policy}+{sel.policy}")
        else:
            sel = greedy(ids, scores, k, policy)
        items = self._describe(snap, sel.items, sel.scores, hist, reasons == "model")
        if self.impressions is not None and len(items):
            self.impressions.log(rid, user_id, sel.items, cat.arrow_ids, sel.scores, sel.propensities, scenario,
                                 snap.view.model.name, sel.policy)
        return RecommendResult(user_id, rid, items, how is None, sel.policy, snap.view.model.name, scenario, known)

    def _describe(self, snap: Snapshot, items: np.ndarray, scores: np.ndarray, hist: np.ndarray,
                  by_model: bool = False) -> list[Recommended]:
        """Titles, attributes and an explanation per item, citing the user's recent likes (never a
        dislike): "similar to X (closest in <modality>)" by content over the last 200, or with
        ``by_model`` "because you liked X" by the model's own scores over the last 50 (see
        :meth:`recommend`), with the modality in which X and the item are most alike."""
        cat = snap.catalog
        cv = snap.content
        reasons = explain(items, hist[-200:], cv.modality_vectors, cv.modality_masks) if cv is not None else \
            [(None, None)] * len(items)
        cited = self._model_reasons(snap, items, hist[-50:]) if by_model and len(hist) else {}
        out = []
        for i, score, (h, modality) in zip(items.tolist(), scores.tolist(), reasons):
            rec = Recommended(cat.ids[i], cat.titles[i], float(score), attributes=cat.attributes[i])
            if i in cited:
                h = cited[i]
                modality = (explain(np.array([i]), np.array([h]), cv.modality_vectors, cv.modality_masks)[0][1]
                            if cv is not None else None)
                rec.because, rec.modality = cat.ids[h], modality
                rec.explanation = f"because you liked {cat.titles[h]}" + (f" (alike in {modality})" if modality else "")
            elif h is not None:
                rec.because, rec.modality = cat.ids[h], modality
                rec.explanation = f"similar to {cat.titles[h]} (closest in {modality})"
            if self.kg is not None and rec.because is not None:
                rec.kg_path = self.kg.path(cat.ids[i], rec.because, cat.titles[h])
            out.append(rec)
        return out

    def _model_reasons(self, snap: Snapshot, items: np.ndarray, hist: np.ndarray) -> dict[int, int]:
        """Catalog item → the liked catalog item contributing most to its score (leave-one-out through the
        model's fold-in). Items and likes outside the model's catalog have no model reason."""
        from mosaicrec.ranking.reasons import cite_by_model, leave_one_out_scores

        n_model = snap.n_model
        mine = hist[hist < n_model]
        inside = items[items < n_model]
        if len(mine) < 1 or not len(inside):
            return {}
        try:
            with self.model_lock:
                loo = leave_one_out_scores(snap.view.model, mine, n_model)
        except (NotSupportedError, MosaicError):
            return {}
        best = cite_by_model(loo, inside)
        return {int(i): int(mine[b]) for i, b in zip(inside.tolist(), best.tolist()) if b >= 0}

    def _require_content(self, snap: Snapshot, what: str) -> ContentView:
        if snap.content is None:
            if self.content_status == "encoding":
                raise ContentNotReady(f"{what} needs item content, which is being encoded in the background; "
                                      "retry shortly")
            raise NotSupportedError(f"{what} needs item content; start the server with content "
                                    "(`mosaicrec encode`, or --content)")
        return snap.content

    def similar(self, item_id: str, k: int = 10, modality: str | None = None) -> list[Recommended]:
        """Items most like ``item_id`` by fused content, or by one modality."""
        snap = self._snap
        cat = snap.catalog
        if item_id not in cat.index:
            raise UnknownItemError(f"unknown item {item_id!r}")
        cv = self._require_content(snap, "similar items")
        if modality is not None and modality not in cv.modality_vectors:
            raise MosaicError(f"no {modality!r} content; available: {', '.join(cv.modality_vectors)}")
        i = cat.index[item_id]
        vec = cv.vectors if modality is None else cv.modality_vectors[modality]
        if modality is not None and not cv.modality_masks[modality][i]:
            return []
        cand = None
        if modality is None and cv.index is not None and len(cv.stale) < self.exact_below:
            # candidates from the index, plus every row changed since it was built or added after it; all
            # rescored with the current vectors, so a stale row is never ranked by its old vector
            hits, _ = cv.index.search(vec[i][None], min(cv.n_indexed, k + 1 + len(cv.stale)))
            cand = np.unique(np.concatenate([hits[0][hits[0] >= 0], np.fromiter(cv.stale, np.int64, len(cv.stale)),
                                             np.arange(cv.n_indexed, len(vec))]))
        cand = np.arange(len(vec)) if cand is None else cand
        sims = vec[cand] @ vec[i]
        sims[cand == i] = -np.inf
        if modality is not None:
            sims[~cv.modality_masks[modality][cand]] = -np.inf
        top, vals = top_k(sims, k)
        return [Recommended(cat.ids[j], cat.titles[j], float(v), attributes=cat.attributes[j])
                for j, v in zip(cand[top], vals) if np.isfinite(v)]

    def search(self, query: str, k: int = 10, user_id: str | None = None) -> list[Recommended]:
        """Items whose content is nearest to a natural-language query (embedded by the text encoder the
        catalog was encoded with).

        Where the catalog also has other modalities (images, audio) with at least ``MIN_PAIRS`` items that
        have text too, the query is also carried into each of those spaces by a linear map fitted on those
        pairs (:func:`~mosaicrec.fusion.cross_modal_map`), so items known only by their image are found as
        well; each modality's similarities are standardised and an item's score is the mean over the
        modalities it has. With text alone the score is the cosine. With ``user_id``, ties in meaning are
        broken towards the user's taste: 80% query match, 20% the user's score (both rescaled to [0, 1])."""
        if not query.strip():
            raise MosaicError("query is empty")
        snap = self._snap
        cv = self._require_content(snap, "search")
        if "text" not in cv.modality_vectors:
            raise NotSupportedError("search needs text content (encode with a text encoder)")
        enc = self._encoder("text", cv)
        with self.model_lock:
            q = normalise(enc.encode([query]))[0]
        maps = self._query_maps(cv)
        text = cv.modality_vectors["text"] @ q
        if not maps:
            sims = np.where(cv.modality_masks["text"], text, -np.inf)
        else:
            total, count = np.zeros(len(text)), np.zeros(len(text))
            per_modality = {"text": text, **{m: cv.modality_vectors[m] @ normalise((q @ W)[None])[0]
                                             for m, W in maps.items()}}
            for m, s in per_modality.items():
                has = cv.modality_masks[m]
                total[has] += (s[has] - s[has].mean()) / max(float(s[has].std()), 1e-6)
                count[has] += 1
            sims = np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32)
        if user_id is not None:
            s = self.user_scores(user_id, snap=snap)
            finite = np.isfinite(s) & np.isfinite(sims)
            both = np.full_like(sims, -np.inf)
            both[finite] = 0.8 * _unit(sims[finite]) + 0.2 * _unit(s[finite])
            sims = both
        top, vals = top_k(sims, k)
        cat = snap.catalog
        return [Recommended(cat.ids[j], cat.titles[j], float(v), attributes=cat.attributes[j])
                for j, v in zip(top, vals) if np.isfinite(v)]

    def _query_maps(self, cv: ContentView) -> dict[str, np.ndarray]:
        """Text → other-modality maps, fitted on first use and kept with this content (a dict of the
        immutable content view: two requests filling it at once compute the same maps)."""
        if "_done" not in cv.maps:
            text, has_text = cv.modality_vectors["text"], cv.modality_masks["text"]
            for m, vectors in cv.modality_vectors.items():
                pairs = has_text & cv.modality_masks[m]
                if m != "text" and pairs.sum() >= self.MIN_PAIRS:
                    cv.maps[m] = cross_modal_map(text[pairs], vectors[pairs])
            cv.maps["_done"] = np.zeros(0)
        return {m: W for m, W in cv.maps.items() if m != "_done"}

    def _encoder(self, name: str, cv: ContentView | None = None):
        """The encoder that made the content called ``name`` (the model's record, else the content's own
        label), loaded on first use."""
        from mosaicrec.encoders import create_encoder

        if name not in self._encoders:
            spec = self.info.encoders.get(name)
            cv = cv or self._snap.content
            source = cv.content.sources.get(name, "") if cv is not None else ""
            enc_name = spec["name"] if spec else source.split("@")[0]
            if not enc_name:
                raise NotSupportedError(f"no encoder known for {name!r} content")
            enc = create_encoder(enc_name, **(spec.get("params", {}) if spec else {}))
            if source and enc.key != source and not enc.needs_fit:
                raise MosaicError(f"the {name!r} content was made by {source}, but {enc.key} would embed new "
                                  "input: re-encode the catalog or serve with the matching encoder")
            if enc.needs_fit:
                raise NotSupportedError(f"{enc_name} is fitted on the catalog and cannot encode new input; "
                                        "use a pretrained encoder for served content")
            self._encoders[name] = enc
        return self._encoders[name]

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
        if self.bandit is not None:
            self._learn(events)
        return added

    def _learn(self, events: pd.DataFrame) -> None:
        """Rewards for lists the bandit chose: events whose context names the list's ``request_id``."""
        ctx = events["context"].astype(str)
        marked = ctx.str.contains("request_id", regex=False)
        if not marked.any():
            return
        threshold = self.info.threshold
        index = self._snap.catalog.index
        rewards = []
        for c, item, weight in zip(ctx[marked], events.loc[marked, "item_id"].astype(str),
                                   events.loc[marked, "weight"].astype(float)):
            try:
                rid = json.loads(c).get("request_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(rid, str) and item in index:
                liked = weight >= threshold if threshold is not None else weight > 0
                rewards.append((rid, index[item], 1.0 if liked else 0.0))
        if rewards and self.bandit.reward(rewards):
            state = self.bandit.state()
            with self._store_lock:
                self.store.save_state(BANDIT_STATE, state)

    def _write_events(self, events: pd.DataFrame) -> np.ndarray:
        """One transaction for a group of calls' events; then the live state. Per row: new or not."""
        with self._store_lock:
            result = self.store.ingest(events=events)
        self.live.apply(events)
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
                items = _patched(stored, items)
            snap = self._snap
            encoded = None
            if snap.content is not None and snap.content.content.modalities:
                from mosaicrec.encoders import encode_items

                encoders = {m: self._encoder(m, snap.content) for m in snap.content.content.modalities}
                with self.model_lock:
                    encoded = encode_items(items, encoders, progress=False,
                                           text_fields=self.info.text_fields, fields=self.info.fields)
                failed = encoded.failures()
                if len(failed):
                    first = failed.iloc[0]
                    raise MediaRejected(f"item {first['item_id']!r}: {first['name']} content rejected "
                                        f"({first['reason']}); {len(failed)} failure(s), nothing was added")
            elif self.content_status == "encoding":
                raise ContentNotReady("the catalog's content is being encoded in the background; add items "
                                      "once it is ready")
            self._commit_items(items, encoded.content if encoded is not None else None)
        return ids

    def install_items(self, items: pd.DataFrame, content: ItemContent | None = None) -> list[str]:
        """Store items whose content is already encoded (``content``, any order) and serve them: the write
        half of :meth:`add_items`, for vectors made elsewhere (a notebook, another encoder run)."""
        self._writable()
        with self._writes:
            self._commit_items(items, content)
        return items["item_id"].astype(str).tolist()

    def _commit_items(self, items: pd.DataFrame, content: ItemContent | None) -> None:
        """Write item rows, then a snapshot with them (call with ``self._writes`` held)."""
        snap = self._snap
        ids = items["item_id"].astype(str).tolist()
        with self._store_lock:
            self.store.ingest(items=items)
        catalog = snap.catalog.with_rows(items)
        cview = snap.content
        if content is not None and cview is not None:
            rows = [catalog.index[i] for i in ids]
            cview = cview.with_rows(catalog.ids, rows, content.align(np.array(ids, dtype=object)))
        elif content is not None:
            cview = ContentView.build(content, catalog.ids, self._use_ann(len(catalog)))
        self._install(catalog=catalog, content=cview)

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
        self.live.erase(user_id, at)
        self._folded.pop(user_id, None)
        self._blocked = self._blocked | {user_id}
        return n

    # -- content and models -----------------------------------------------------------------------------
    def set_content(self, content: ItemContent | None) -> None:
        """Serve ``content`` (any catalog order; items it lacks have none) from the next request on."""
        with self._writes:
            snap = self._snap
            cview = ContentView.build(content, snap.catalog.ids, self._use_ann(len(snap.catalog))) \
                if content is not None else None
            self._install(content=cview)
            self.content_status = "ready" if cview is not None else "none"

    def resolve_model_dir(self, folder: str | None) -> Path:
        """A reload's folder: inside the model root the server was started with, or refused."""
        if self.model_root is None:
            raise ModelRejected("this server was started without a model root; reloads are off")
        if folder is None:
            raise ModelRejected("name the model folder to load (model_dir)")
        if "\x00" in folder or ".." in Path(folder).parts:
            raise ModelRejected(f"model_dir {folder!r}: must be a folder inside the model root (no '..')")
        real = Path(os.path.realpath(self.model_root / folder))
        if real != self.model_root and self.model_root not in real.parents:
            raise ModelRejected(f"model_dir {folder!r}: must be a folder inside the model root")
        return real

    def load_model_dir(self, folder: Path) -> tuple[BaseRecommender, TrainingInfo]:
        """A saved model and its training record; any failure is a :class:`ModelRejected` naming the folder
        relative to the model root."""
        from mosaicrec.models import load_model

        name = os.path.relpath(folder, self.model_root) if self.model_root else folder.name
        if not (folder / "model.json").is_file():
            raise ModelRejected(f"model_dir {name!r}: no saved model there (model.json missing)")
        try:
            return load_model(folder), TrainingInfo.load(folder)
        except Exception as e:  # noqa: BLE001  a broken folder of any kind: refuse it, keep serving
            raise ModelRejected(f"model_dir {name!r}: cannot load the model ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]})") from None

    def swap_model(self, model: BaseRecommender, info: TrainingInfo | None = None) -> None:
        """Serve a newly trained model. It must score this catalog (its items all in it) and read content
        made by the same encoders. Its snapshot (index, id maps, catalog in its order, content realigned) is
        built beside the old one; the swap is one assignment, so requests see either model, never a mix,
        and none fails. Live events are kept; users with events the new model lacks are folded in."""
        info = info or TrainingInfo()
        if info.threshold is not None and info.threshold != self.info.threshold:
            raise ModelRejected(f"the model's likes are weights ≥ {info.threshold:g}, this service's "
                                f"{_rule(self.info.threshold)}: restart the service to change what a like is")
        info = info.model_copy(update={"threshold": self.info.threshold})
        with self._writes:
            snap = self._snap
            alien = [str(i) for i in model.item_ids if str(i) not in snap.catalog.index]
            if alien:
                raise ModelRejected(f"the model was trained on another catalog: {len(alien)} of its "
                                    f"{len(model.item_ids)} items are not in this one (e.g. {alien[0]!r})")
            cv = snap.content
            for name, spec in info.encoders.items():
                source = cv.content.sources.get(name) if cv is not None else None
                if source is not None and spec.get("key") and spec["key"] != source:
                    raise ModelRejected(f"the model reads {name!r} content made by {spec['key']}, but this "
                                        f"server's is made by {source}; restart it with the model's encoders")
            view = self._model_view(model, info, len(snap.catalog))
            catalog = snap.catalog.reordered([str(i) for i in model.item_ids])
            cview = cv
            if cv is not None and catalog.ids != snap.catalog.ids:
                cview = ContentView.build(cv.content, catalog.ids, self._use_ann(len(catalog)))
            with self.live.lock:
                self.live.refresh_changed(view.users, view.item_index, model._require_fitted())
                self._blocked = self.live.blocked_rows(info.data_as_of)
                self._install(view=view, catalog=catalog, content=cview)
            self.info = info
            self._encoders = {}
            self.reloads += 1

    def reload(self, folder: str | None) -> dict[str, Any]:
        """Load a model folder (inside the model root) and serve it; the old model keeps serving if it fails."""
        path = self.resolve_model_dir(folder)
        model, info = self.load_model_dir(path)
        self.swap_model(model, info)
        return {"model": model.name, "model_dir": os.path.relpath(path, self.model_root), "reloads": self.reloads}

    def _write_impressions(self, rows: pd.DataFrame) -> None:
        with self._store_lock:
            self.store.log_impressions(rows)

    def export_snapshot(self, folder: str | Path) -> dict:
        """A consistent Parquet snapshot of the store, for training beside the running service."""
        with self._store_lock:
            return self.store.export_snapshot(folder)

    def close(self) -> None:
        """Flush the impression log and release the store (the server calls this on shutdown)."""
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
                "content_status": self.content_status, "threshold": self.info.threshold,
                "uptime_s": round(time.time() - self.started, 1),
                "bandit": None if self.bandit is None else {
                    "policy": self.bandit.name, "share": self.bandit.config.share, "restored": self.bandit.restored,
                    "rewards": self.bandit.rewards, "unmatched": self.bandit.unmatched,
                    "updates": self.bandit.bandit.n_updates}}


class _KGIndex:
    """The item KG by item id, with each item's facts and the entity degrees computed once."""

    def __init__(self, kg: KnowledgeGraph) -> None:
        self.kg = kg
        self.row = {str(i): k for k, i in enumerate(kg.item_ids)}
        self.facts = kg.item_facts()
        self.degree = kg.degree()

    def path(self, item: str, liked: str, liked_title: str) -> str | None:
        """``"you liked <title>; both star Y"``, or None when the two share nothing (or one is not in the
        graph, e.g. an item added after the service started)."""
        a, b = self.row.get(item), self.row.get(liked)
        if a is None or b is None:
            return None
        found = self.kg.path(a, b, self.facts, self.degree)
        return found.sentence(liked_title) if found is not None else None


def _patched(stored: pd.DataFrame, patch: pd.DataFrame) -> pd.DataFrame:
    """Stored rows with a merge-patch applied (fields absent from the patch are ``...``: left as they are)."""
    base = {str(r["item_id"]): dict(r) for _, r in stored.iterrows()}
    out = []
    for _, p in patch.iterrows():
        row = dict(base[str(p["item_id"])])
        for key in ("title", "image", "audio"):
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
    return pd.DataFrame(out, columns=["item_id", "title", "texts", "image", "audio", "attributes"])


def _rule(threshold: float | None) -> str:
    return f"weights ≥ {threshold:g}" if threshold is not None else "weights > 0"


def _history_row(hist: np.ndarray, n_model: int) -> sp.csr_matrix:
    """A user's live likes as one row over the model's items (items added since training dropped)."""
    row = np.unique(hist[hist < n_model])
    return sp.csr_matrix((np.ones(len(row), np.float32), (np.zeros(len(row), int), row)), shape=(1, n_model))


def _time_row(x: sp.csr_matrix, ev: UserEvents, index: dict[str, int]) -> sp.csr_matrix:
    """The times of a history row's events (the same pattern as ``x``), from the user's latest events."""
    when = {index[item]: t for item, t, _ in ev.last if item in index}
    data = np.array([when.get(int(i), 0) for i in x.indices], np.float64)
    return sp.csr_matrix((data, x.indices.copy(), x.indptr.copy()), shape=x.shape)


def _unit(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)
