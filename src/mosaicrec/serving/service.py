"""The serving core, independent of HTTP: a trained model, the catalog and content, and live state.

What changes while serving, and how it reaches recommendations without retraining:

* **events** are written to the DuckDB store first (durable before the call returns), then added to the
  user's live history; a user with events the model has not trained on is scored by folding that history in
  (``score_histories``), so the next call reflects them;
* **new items** are written to the store, encoded at once with the encoders the content was made with, and
  scored by content: their content similarity to the user's history, put on the scale of the model's scores
  (a z-score mapped onto the model's score distribution for this user);
* **erased users** lose their events and profile in the store and in memory, and are unknown from then on.

All model calls are serialised by one lock: numba's workqueue threading layer (which the kernels use so
that torch keeps its threads) must not be entered from two threads at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.fusion import concat_features, cross_modal_map
from mosaicrec.models.base import BaseRecommender, top_k
from mosaicrec.ranking.ann import InnerProductIndex, augment
from mosaicrec.ranking.rerank import explain, mmr


class MediaRejected(MosaicError):
    """New item content that cannot be encoded (the API answers 422)."""


@dataclass
class Recommended:
    item_id: str
    title: str
    score: float
    explanation: str | None = None
    because: str | None = None
    modality: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


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


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class Service:
    """Recommendations, similar items, search, and the write paths, over one trained model."""

    def __init__(self, model: BaseRecommender, store_path: str | Path, content: ItemContent | None = None,
                 positive_threshold: float | None = None, retrieval: str = "auto",
                 ann_min_items: int = 50_000, exact_below: int = 20_000) -> None:
        """``retrieval``: ``exact`` scores every item; ``ann`` uses HNSW indexes over the model's item
        vectors (factor and neural models) and over the fused content (similar items); ``auto`` picks
        ANN from ``ann_min_items`` items on. Under ANN, a request whose filters and exclusions leave at
        most ``exact_below`` items (and at most a fifth of the catalog) scores those items exactly:
        cheaper than a graph walk that mostly meets filtered-out nodes, and exact."""
        if retrieval not in ("auto", "exact", "ann"):
            raise MosaicError(f"retrieval must be auto, exact or ann, not {retrieval!r}")
        self.model = model
        self.store_path = Path(store_path)
        self.lock = threading.RLock()
        self._writes = threading.Lock()  # catalog changes (new items, reloads), one at a time
        self._store_lock = threading.Lock()  # the DuckDB connection, used by one thread at a time
        self._events = GroupCommit(self._write_events)
        self.threshold = positive_threshold
        self.retrieval_mode, self.ann_min_items, self.exact_below = retrieval, ann_min_items, exact_below
        self.started = time.time()
        self.model_items = [str(i) for i in model.item_ids]
        self.model_users = {str(u): k for k, u in enumerate(model.user_ids)}
        # One connection for the service's life: opening DuckDB per write costs ~100 ms; writes are
        # serialised by the lock, which is what DuckDB's single writer needs anyway.
        self.store = Store(self.store_path)
        data = self.store.load_dataset()
        catalog = data.items
        known = set(self.model_items)
        extra = [i for i in catalog["item_id"].astype(str) if i not in known]
        self.item_ids: list[str] = self.model_items + extra
        self.index = {i: k for k, i in enumerate(self.item_ids)}
        titles = dict(zip(catalog["item_id"].astype(str), catalog["title"]))
        attrs = dict(zip(catalog["item_id"].astype(str), catalog["attributes"]))
        self.titles = [str(titles.get(i) or i) for i in self.item_ids]
        self.attributes = [dict(attrs.get(i) or {}) for i in self.item_ids]
        self._set_content(content)
        self.history: dict[str, set[int]] = {}
        x = data.interactions
        positive = np.ones(x.n_events, bool) if positive_threshold is None else x.weights >= positive_threshold
        for u, i in zip(x.user_ids[x.users[positive]], x.item_ids[x.items[positive]]):
            self.history.setdefault(str(u), set()).add(self.index[str(i)])
        self.changed: set[str] = set()  # users with events the model has not trained on
        self.erased: set[str] = set()
        self._postings: dict[str, dict[str, np.ndarray]] = {}  # attribute -> value -> items, on first use
        self._encoders: dict[str, Any] = {}  # encoders for new items and queries, loaded on first use
        self.ann, self._items_aug, self._sample = self._build_index(model)
        self.retrieval = "ann" if self.ann is not None else "exact"
        self.reloads = 0

    def _use_ann(self, n_items: int) -> bool:
        return self.retrieval_mode == "ann" or (self.retrieval_mode == "auto" and n_items >= self.ann_min_items)

    def _build_index(self, model: BaseRecommender):
        """(HNSW index or ``None``, the items' [v_i, b_i] rows or ``None``, the calibration sample)."""
        factors = model.item_factors()
        n = len(model.item_ids)
        sample = np.sort(np.random.default_rng(0).choice(n, min(n, 2048), replace=False))
        if factors is None:
            if self.retrieval_mode == "ann":
                raise NotSupportedError(f"{model.name} has no item vectors to index; use retrieval=exact")
            return None, None, sample
        V, b = factors
        if not self._use_ann(n):
            return None, augment(V, b), sample
        return InnerProductIndex(V, b), augment(V, b), sample

    def swap_model(self, model: BaseRecommender) -> None:
        """Serve a newly trained model. Everything it needs (index, id maps, remapped histories) is built
        first, outside the lock; the swap itself is a few reference assignments under the lock, so requests
        see either the old model or the new one, never a mix, and none fails. Items the new model lacks
        stay servable by content; live events are kept, and users with events newer than the reload keep
        being folded in."""
        with self._writes:  # no item is added while the new catalog order is worked out
            ann, items_aug, sample = self._build_index(model)
            model_items = [str(i) for i in model.item_ids]
            known = set(model_items)
            item_ids = model_items + [i for i in self.item_ids if i not in known]
            index = {i: k for k, i in enumerate(item_ids)}
            old = dict(zip(self.item_ids, zip(self.titles, self.attributes)))
            titles = [old.get(i, (i, {}))[0] for i in item_ids]
            attributes = [old.get(i, (i, {}))[1] for i in item_ids]
            # the same catalog order (the usual retrain) keeps the content and its index as they are
            content = None if item_ids == self.item_ids else self._content_state(self.content, item_ids, True)
            with self.lock:
                history = {u: {index[self.item_ids[i]] for i in items} for u, items in self.history.items()}
                self.model, self.ann, self._items_aug, self._sample = model, ann, items_aug, sample
                self.model_items, self.model_users = model_items, {str(u): k for k, u in enumerate(model.user_ids)}
                self.item_ids, self.index, self.titles, self.attributes = item_ids, index, titles, attributes
                self.history = history
                self._postings = {}
                self.__dict__.update(content or {})
                self.retrieval = "ann" if ann is not None else "exact"
                self.reloads += 1

    # -- content ----------------------------------------------------------------------------------------
    def _set_content(self, content: ItemContent | None, index: bool = True) -> None:
        """Serve ``content`` (aligned to the catalog order). ``index=False`` keeps the content HNSW index
        (the caller appends rows for new items and marks changed rows stale) instead of rebuilding it."""
        keep = {} if index else {"content_ann": self.content_ann, "_stale": self._stale}
        self.__dict__.update({**self._content_state(content, self.item_ids, index), **keep})

    def _content_state(self, content: ItemContent | None, item_ids: list[str], index: bool) -> dict[str, Any]:
        """What serving content needs, for ``item_ids`` in that order; built apart from the live state so
        that a reload can build it outside the lock."""
        aligned = content.align(np.array(item_ids, dtype=object)) if content is not None else None
        state: dict[str, Any] = {"content": aligned, "vectors": None, "content_ann": None, "_stale": set(),
                                 "modality_vectors": {}, "modality_masks": {}, "_maps": None}
        if aligned is None or not aligned.modalities:
            return state
        state["vectors"] = _normalise(concat_features(aligned, aligned.modalities))
        state["modality_vectors"] = {m: _normalise(aligned.features[m]) for m in aligned.modalities}
        state["modality_masks"] = dict(aligned.masks)
        if index and self._use_ann(len(item_ids)):
            state["content_ann"] = InnerProductIndex(state["vectors"])
        return state

    # -- reads ------------------------------------------------------------------------------------------
    def _history(self, user_id: str) -> np.ndarray:
        """The user's live positive items (indices), sorted."""
        return np.array(sorted(self.history.get(user_id, ())), dtype=np.int64)

    def _check_user(self, user_id: str) -> None:
        if user_id in self.erased or (user_id not in self.model_users and user_id not in self.history):
            raise UnknownUserError(f"unknown user {user_id!r}: no events and not in the model")

    def _per_user(self, user_id: str, hist: np.ndarray, trained: Callable, folded: Callable) -> np.ndarray:
        """``trained`` (on the user's model row) for a trained user with no live events, else ``folded``
        (on their live history); a model that cannot fold a user in keeps a trained user's row until the
        next retrain. Call under the lock."""
        if user_id in self.model_users and user_id not in self.changed:
            return trained(np.array([self.model_users[user_id]]))[0]
        try:
            return folded(_history_row(hist, len(self.model_items)))[0]
        except NotSupportedError:
            if user_id not in self.model_users:
                raise  # the API answers 501: this model cannot place a user it never saw
            return trained(np.array([self.model_users[user_id]]))[0]

    def _query(self, user_id: str, hist: np.ndarray, context: str | None = None) -> np.ndarray:
        """[q_u, 1] for a factor model: the trained vector, or one folded in from the live history; a
        context model places it in ``context``."""
        q = self._per_user(user_id, hist, partial(self.model.user_factors, context=context),
                           partial(self.model.history_factors, context=context))
        return np.append(q, np.float32(1.0)).astype(np.float32)

    def _model_scores(self, user_id: str, hist: np.ndarray, context: str | None = None) -> np.ndarray:
        """The model's scores of every model item (in ``context``). Call under the lock."""
        if self._items_aug is not None:
            return self._items_aug @ self._query(user_id, hist, context)
        return self._per_user(user_id, hist, partial(self.model.score, context=context),
                              partial(self.model.score_histories, context=context))

    def _content_scores(self, hist: np.ndarray, items: np.ndarray, sample_scores: np.ndarray) -> np.ndarray:
        """Scores of items added since training (which the model cannot score): their content similarity
        to the user's history as a z-score over the model's items, mapped onto the spread of this user's
        model scores. Both spreads are measured on a fixed sample of model items, so that the ANN path,
        which never scores every item, gives the same numbers as exact scoring."""
        profile = self.vectors[hist].mean(axis=0)
        sim = self.vectors[self._sample] @ profile
        z = (self.vectors[items] @ profile - sim.mean()) / max(float(sim.std()), 1e-6)
        known = sample_scores[np.isfinite(sample_scores)]
        if not len(known):
            return z.astype(np.float32)
        return (float(known.mean()) + float(known.std()) * z).astype(np.float32)

    def _user_scores(self, user_id: str, hist: np.ndarray) -> np.ndarray:
        """Scores over every catalog item (model items, then items added since training)."""
        self._check_user(user_id)
        n_model = len(self.model_items)
        with self.lock:
            s = self._model_scores(user_id, hist)
        full = np.full(len(self.item_ids), -np.inf, np.float32)
        full[:n_model] = s
        if len(self.item_ids) > n_model and self.vectors is not None and len(hist):
            new = np.arange(n_model, len(self.item_ids))
            full[n_model:] = self._content_scores(hist, new, s[self._sample])
        return full

    def _top(self, user_id: str, hist: np.ndarray, n: int, allowed: np.ndarray, context: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best allowed items (indices over the whole catalog) and their scores, best first.

        Factor models answer from the HNSW index when one is built and the allowed items are many (the
        mask travels into the graph walk), else by scoring exactly the allowed items only; other models
        score every item. Items added since training are scored by content and merged in. A context
        model's ``context`` goes into the query, so the same index serves every context."""
        self._check_user(user_id)
        n_model = len(self.model_items)
        allowed_model = allowed[:n_model]
        n_allowed = int(np.count_nonzero(allowed_model))
        ids = s = None
        with self.lock:
            q = self._query(user_id, hist, context) if self._items_aug is not None else None
            if q is not None and self.ann is not None and n_allowed > min(self.exact_below, n_model // 5):
                ids, scores = (a[0] for a in self.ann.search(q[None, :-1], n, allow=allowed_model))
                if np.count_nonzero(ids >= 0) < min(n, n_allowed):
                    ids = None  # the walk found too few allowed items: score them exactly
            if ids is None and q is not None and n_allowed <= n_model // 4:
                cand = np.flatnonzero(allowed_model)  # few rows: copying them out beats scoring every item
                top, scores = top_k((self._items_aug[cand] @ q)[None], min(n, n_allowed))
                ids, scores = cand[top[0]], scores[0]
            elif ids is None:
                s = self._items_aug @ q if q is not None else self._model_scores(user_id, hist, context)
                ids, scores = (a[0] for a in top_k(np.where(allowed_model, s, -np.inf)[None], min(n, n_model)))
            if len(allowed) > n_model:  # the spread of this user's model scores, for items added since
                sample_scores = s[self._sample] if s is not None else self._items_aug[self._sample] @ q
        keep = (ids >= 0) & np.isfinite(scores)
        ids, scores = ids[keep].astype(np.int64), scores[keep].astype(np.float32)
        if len(allowed) > n_model and self.vectors is not None and len(hist):
            new = np.flatnonzero(allowed[n_model:]) + n_model
            if len(new):
                ids = np.concatenate([ids, new])
                scores = np.concatenate([scores, self._content_scores(hist, new, sample_scores)])
                order = np.argsort(-scores, kind="stable")[:n]
                ids, scores = ids[order], scores[order]
        return ids, scores

    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  diversity: float | None = None, filters: dict[str, Any] | None = None,
                  exclude_seen: bool = True, scenario: str | None = None) -> list[Recommended]:
        """Top-``k`` for a user. Filters (``attribute: value``, matching a value or a member of a list
        attribute) and exclusions are applied before the top-k, so ``k`` items come back whenever ``k``
        items pass. ``diversity`` in (0, 1] re-ranks with MMR at λ = 1 − diversity. ``scenario`` is the
        request's value of a context model's context column (:meth:`check_scenario`)."""
        self.check_scenario(scenario)
        hist = self._history(user_id)
        allowed = self._filter_mask(filters) if filters else np.ones(len(self.item_ids), bool)
        if exclude_seen and len(hist):
            allowed[hist] = False
        for item in exclude or []:
            if item in self.index:
                allowed[self.index[item]] = False
        diverse = bool(diversity) and self.vectors is not None
        ids, scores = self._top(user_id, hist, max(5 * k, 50) if diverse else k, allowed, scenario)
        if diverse:
            chosen = mmr(ids, scores, self.vectors, k, 1.0 - diversity)
            score_of = dict(zip(ids.tolist(), scores.tolist()))
            return self._describe_all(chosen.tolist(), [score_of[i] for i in chosen.tolist()], hist)
        return self._describe_all(ids.tolist(), scores.tolist(), hist)

    def check_scenario(self, scenario: str | None) -> bool | None:
        """Whether the served model knows ``scenario`` (``None`` without one). A context model serves a
        value it never saw with its shared scores; a context-free model refuses any scenario
        (:meth:`~mosaicrec.models.base.BaseRecommender.knows_context`)."""
        return None if scenario is None else self.model.knows_context(scenario, "scenario")

    def _filter_mask(self, filters: dict[str, Any]) -> np.ndarray:
        """Items passing every ``attribute: value`` filter (a new array the caller may change). The first
        filter on an attribute scans the catalog once and keeps, for each of its values, the items that
        have it (until the catalog changes): a scan per request is too slow."""
        mask = np.ones(len(self.item_ids), bool)
        for key, want in filters.items():
            postings = self._postings.get(key)
            if postings is None:
                postings = self._postings[key] = _postings(self.attributes, key)
            passing = np.zeros(len(self.item_ids), bool)
            passing[postings.get(str(want), [])] = True
            mask &= passing
        return mask

    def _describe_all(self, items: list[int], scores: list[float], hist: np.ndarray) -> list[Recommended]:
        """Titles, attributes and a "similar to X (closest in <modality>)" explanation per item."""
        reasons = explain(np.array(items, np.int64), hist[-200:], self.modality_vectors, self.modality_masks)
        out = []
        for i, score, (h, modality) in zip(items, scores, reasons):
            rec = Recommended(self.item_ids[i], self.titles[i], score, attributes=self.attributes[i])
            if h is not None:
                rec.because, rec.modality = self.item_ids[h], modality
                rec.explanation = f"similar to {self.titles[h]} (closest in {modality})"
            out.append(rec)
        return out

    def similar(self, item_id: str, k: int = 10, modality: str | None = None) -> list[Recommended]:
        """Items most like ``item_id`` by fused content, or by one modality."""
        if item_id not in self.index:
            raise UnknownItemError(f"unknown item {item_id!r}")
        if self.vectors is None:
            raise NotSupportedError("similar items need item content; start the server with content")
        if modality is not None and modality not in self.modality_vectors:
            raise MosaicError(f"no {modality!r} content; available: {', '.join(self.modality_vectors)}")
        i = self.index[item_id]
        vec = self.vectors if modality is None else self.modality_vectors[modality]
        if modality is not None and not self.modality_masks[modality][i]:
            return []
        with self.lock:
            ann, stale = self.content_ann, self._stale
            if modality is None and ann is not None and len(stale) < self.exact_below:
                # candidates from the index, plus every item whose vector changed since it was built;
                # all rescored with the current vectors, so a stale row is never ranked by its old vector
                hits, _ = ann.search(vec[i][None], min(len(ann), k + 1 + len(stale)))  # room for stale hits
                cand = np.unique(np.concatenate([hits[0][hits[0] >= 0], np.fromiter(stale, np.int64, len(stale)),
                                                 np.arange(len(ann), len(vec))]))
            else:
                cand = None
        sims = vec @ vec[i] if cand is None else vec[cand] @ vec[i]
        cand = np.arange(len(vec)) if cand is None else cand
        sims[cand == i] = -np.inf
        if modality is not None:
            sims[~self.modality_masks[modality][cand]] = -np.inf
        top, vals = top_k(sims[None], k)
        return [Recommended(self.item_ids[j], self.titles[j], float(v), attributes=self.attributes[j])
                for j, v in zip(cand[top[0]], vals[0]) if np.isfinite(v)]

    def search(self, query: str, k: int = 10, user_id: str | None = None) -> list[Recommended]:
        """Items whose content is nearest to a natural-language query (the text encoder the catalog was
        encoded with embeds the query).

        Where the catalog also has other modalities (images, audio) with at least
        ``MIN_PAIRS`` items that have text too, the query is also carried into each of those spaces by a
        linear map fitted on those pairs (:func:`~mosaicrec.fusion.cross_modal_map`), so items known only
        by their image are found as well; each modality's similarities are standardised and an item's
        score is the mean over the modalities it has. With text alone the score is the cosine. With
        ``user_id``, ties in meaning are broken towards the user's taste: 80% query match, 20% the user's
        score (both rescaled to [0, 1])."""
        if not query.strip():
            raise MosaicError("query is empty")
        if "text" not in self.modality_vectors:
            raise NotSupportedError("search needs text content (encode with a text encoder)")
        enc = self._encoder("text")
        with self.lock:
            q = _normalise(enc.encode([query]))[0]
            maps = self._query_maps()
            text = self.modality_vectors["text"] @ q
            if not maps:
                sims = np.where(self.modality_masks["text"], text, -np.inf)
            else:
                total, count = np.zeros(len(text)), np.zeros(len(text))
                per_modality = {"text": text, **{m: self.modality_vectors[m] @ _normalise((q @ W)[None])[0]
                                                 for m, W in maps.items()}}
                for m, s in per_modality.items():
                    has = self.modality_masks[m]
                    total[has] += (s[has] - s[has].mean()) / max(float(s[has].std()), 1e-6)
                    count[has] += 1
                sims = np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32)
        if user_id is not None:
            s = self._user_scores(user_id, self._history(user_id))
            finite = np.isfinite(s) & np.isfinite(sims)
            both = np.full_like(sims, -np.inf)
            both[finite] = 0.8 * _unit(sims[finite]) + 0.2 * _unit(s[finite])
            sims = both
        top, vals = top_k(sims[None], k)
        return [Recommended(self.item_ids[j], self.titles[j], float(v), attributes=self.attributes[j])
                for j, v in zip(top[0], vals[0]) if np.isfinite(v)]

    MIN_PAIRS = 20

    def _query_maps(self) -> dict[str, np.ndarray]:
        """Text → other-modality maps, fitted on first use and kept until the content changes."""
        if self._maps is None:
            self._maps = {}
            text, has_text = self.modality_vectors["text"], self.modality_masks["text"]
            for m, vectors in self.modality_vectors.items():
                pairs = has_text & self.modality_masks[m]
                if m != "text" and pairs.sum() >= self.MIN_PAIRS:
                    self._maps[m] = cross_modal_map(text[pairs], vectors[pairs])
        return self._maps

    def _encoder(self, name: str):
        from mosaicrec.encoders import create_encoder

        cache = self._encoders
        if name not in cache:
            source = self.content.sources.get(name, "") if self.content is not None else ""
            enc_name = source.split("@")[0]
            if not enc_name:
                raise NotSupportedError(f"no encoder known for {name!r} content")
            cache[name] = create_encoder(enc_name)
            if cache[name].needs_fit:
                raise NotSupportedError(f"{enc_name} is fitted on the catalog and cannot encode new input; "
                                        "use a pretrained encoder for served content")
        return cache[name]

    # -- writes -----------------------------------------------------------------------------------------
    def add_events(self, events: pd.DataFrame) -> int:
        """Write events (canonical frame: user_id, item_id, timestamp, event_type, weight, context) to the
        store, then to live histories; returns how many were new. Unknown items are refused before
        anything is written. Concurrent calls share one transaction (group commit): each returns once
        its events are durable, and one commit serves them all."""
        unknown = sorted({i for i in events["item_id"].astype(str).unique() if i not in self.index})
        if unknown:
            raise UnknownItemError(f"unknown item {unknown[0]!r} in events ({len(unknown)} unknown); "
                                   "add items with POST /items first")
        return self._events.submit(events)

    def _write_events(self, events: pd.DataFrame) -> np.ndarray:
        """One transaction for a group of calls' events; then the live histories. Per row: new or not."""
        with self._store_lock:
            result = self.store.ingest(events=events)
        positive = events if self.threshold is None else events[events["weight"] >= self.threshold]
        with self.lock:  # readers wait for the few dict updates only, never for the commit
            for u, i in zip(positive["user_id"].astype(str), positive["item_id"].astype(str)):
                self.history.setdefault(u, set()).add(self.index[i])
                self.changed.add(u)
                self.erased.discard(u)
        return result.events_new

    def add_items(self, items: pd.DataFrame) -> list[str]:
        """Encode new or updated items, then write them to the store and make them recommendable by content
        (no retraining). Content is encoded *first*: if any given text, image or audio cannot be encoded
        (unreadable or unsupported media, empty text) nothing is written and :class:`MediaRejected` names
        each item and reason."""
        from mosaicrec.encoders import encode_items

        ids = items["item_id"].astype(str).tolist()
        encoded = None
        if self.content is not None and self.content.modalities:
            encoders = {m: self._encoder(m) for m in self.content.modalities}
            encoded = encode_items(items, encoders, progress=False)
            failed = encoded.failures()
            if len(failed):
                first = failed.iloc[0]
                raise MediaRejected(f"item {first['item_id']!r}: {first['name']} content rejected "
                                    f"({first['reason']}); {len(failed)} failure(s), nothing was added")
        with self._writes:
            with self._store_lock:
                self.store.ingest(items=items)
            self._add_to_catalog(ids, items, encoded)
        return ids

    def _add_to_catalog(self, ids: list[str], items: pd.DataFrame, encoded) -> None:
        with self.lock:
            self._postings = {}
            self.item_ids += [i for i in ids if i not in self.index]
            self.index = {i: k for k, i in enumerate(self.item_ids)}
            for _, row in items.iterrows():
                k = self.index[str(row["item_id"])]
                title, attrs = str(row.get("title") or row["item_id"]), dict(row.get("attributes") or {})
                if k < len(self.titles):
                    self.titles[k], self.attributes[k] = title, attrs
                else:
                    self.titles.append(title)
                    self.attributes.append(attrs)
            if encoded is not None:
                old = self.content.align(np.array(self.item_ids, dtype=object))
                got = encoded.content.align(np.array(ids, dtype=object))
                feats = {m: old.features[m].copy() for m in old.modalities}
                masks = {m: old.masks[m].copy() for m in old.modalities}
                rows = [self.index[i] for i in ids]
                for m in old.modalities:
                    feats[m][rows], masks[m][rows] = got.features[m], got.masks[m]
                self._set_content(ItemContent(np.array(self.item_ids, dtype=object), feats, masks,
                                              dict(self.content.sources)), index=False)
                if self.content_ann is not None:
                    # new rows join the index; rows of updated items are stale until the next rebuild
                    self._stale.update(r for r in rows if r < len(self.content_ann))
                    self.content_ann.add(self.vectors[len(self.content_ann):])

    def delete_user(self, user_id: str) -> int:
        """Erase the user's events and profile from the store and from live state."""
        if user_id not in self.model_users and user_id not in self.history:
            raise UnknownUserError(f"unknown user {user_id!r}")
        with self._store_lock:
            n = self.store.delete_user(user_id)
        with self.lock:
            self.history.pop(user_id, None)
            self.changed.discard(user_id)
            self.erased.add(user_id)
        return n

    def close(self) -> None:
        """Release the store (the server calls this on shutdown)."""
        with self._store_lock:
            self.store.close()

    def health(self) -> dict[str, Any]:
        return {"model": self.model.name, "retrieval": self.retrieval, "reloads": self.reloads,
                "items": len(self.item_ids), "model_items": len(self.model_items),
                "users": len(self.model_users), "live_users": len(self.history),
                "content": self.content.modalities if self.content is not None else [],
                "uptime_s": round(time.time() - self.started, 1)}


def _postings(attributes: list[dict[str, Any]], key: str) -> dict[str, np.ndarray]:
    """For each value of attribute ``key`` (as text; a member of a list value counts), the items having it."""
    found: dict[str, list[int]] = {}
    for i, attrs in enumerate(attributes):
        have = attrs.get(key)
        for value in (have if isinstance(have, list) else [have]):
            found.setdefault(str(value), []).append(i)
    return {value: np.array(items, np.int64) for value, items in found.items()}


def _history_row(hist: np.ndarray, n_model: int) -> sp.csr_matrix:
    """A user's live history as one row over the model's items (items added since training dropped)."""
    row = hist[hist < n_model]
    return sp.csr_matrix((np.ones(len(row), np.float32), (np.zeros(len(row), int), row)), shape=(1, n_model))


def _unit(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)
