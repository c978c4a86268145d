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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mosaicrec.data.content import ItemContent
from mosaicrec.data.store import Store
from mosaicrec.errors import MosaicError, NotSupportedError, UnknownItemError, UnknownUserError
from mosaicrec.fusion import concat_features
from mosaicrec.models.base import BaseRecommender, top_k
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


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class Service:
    """Recommendations, similar items, search, and the write paths, over one trained model."""

    def __init__(self, model: BaseRecommender, store_path: str | Path, content: ItemContent | None = None,
                 positive_threshold: float | None = None, retrieval: str = "auto",
                 ann_min_items: int = 50_000) -> None:
        """``retrieval``: ``exact`` scores every item; ``ann`` uses an HNSW index over the model's item
        vectors (factor and neural models); ``auto`` picks ANN from ``ann_min_items`` items on."""
        if retrieval not in ("auto", "exact", "ann"):
            raise MosaicError(f"retrieval must be auto, exact or ann, not {retrieval!r}")
        self.model = model
        self.store_path = Path(store_path)
        self.lock = threading.RLock()
        self.threshold = positive_threshold
        self.retrieval_mode, self.ann_min_items = retrieval, ann_min_items
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
        self._masks: dict[tuple[str, str], np.ndarray] = {}  # filter masks, built on first use
        self._encoders: dict[str, Any] = {}  # encoders for new items and queries, loaded on first use
        self.ann, self._user_vectors = self._build_index(model)
        self.retrieval = "ann" if self.ann is not None else "exact"
        self.reloads = 0

    def _build_index(self, model: BaseRecommender):
        factors = _factors(model)
        if self.retrieval_mode == "ann" and factors is None:
            raise NotSupportedError(f"{model.name} has no item vectors to index; use retrieval=exact")
        if factors is not None and (self.retrieval_mode == "ann" or (self.retrieval_mode == "auto" and
                                                                     len(model.item_ids) >= self.ann_min_items)):
            from mosaicrec.ranking.ann import InnerProductIndex

            return InnerProductIndex(factors[1], factors[2]), factors[0]
        return None, None

    def swap_model(self, model: BaseRecommender) -> None:
        """Serve a newly trained model. Everything it needs (index, id maps, remapped histories) is built
        first, outside the lock; the swap itself is a few reference assignments under the lock, so requests
        see either the old model or the new one, never a mix, and none fails. Items the new model lacks
        stay servable by content; live events are kept, and users with events newer than the reload keep
        being folded in."""
        ann, user_vectors = self._build_index(model)
        model_items = [str(i) for i in model.item_ids]
        known = set(model_items)
        item_ids = model_items + [i for i in self.item_ids if i not in known]
        index = {i: k for k, i in enumerate(item_ids)}
        old = dict(zip(self.item_ids, zip(self.titles, self.attributes)))
        titles = [old.get(i, (i, {}))[0] for i in item_ids]
        attributes = [old.get(i, (i, {}))[1] for i in item_ids]
        content = self.content
        with self.lock:
            history = {u: {index[self.item_ids[i]] for i in items} for u, items in self.history.items()}
            self.model, self.ann, self._user_vectors = model, ann, user_vectors
            self.model_items, self.model_users = model_items, {str(u): k for k, u in enumerate(model.user_ids)}
            self.item_ids, self.index, self.titles, self.attributes = item_ids, index, titles, attributes
            self.history = history
            self._masks.clear()
            self._set_content(content)
            self.retrieval = "ann" if ann is not None else "exact"
            self.reloads += 1

    # -- content ----------------------------------------------------------------------------------------
    def _set_content(self, content: ItemContent | None) -> None:
        self.content = content.align(np.array(self.item_ids, dtype=object)) if content is not None else None
        if self.content is None or not self.content.modalities:
            self.vectors = None
            self.modality_vectors, self.modality_masks = {}, {}
            return
        self.vectors = _normalise(concat_features(self.content, self.content.modalities))
        self.modality_vectors = {m: _normalise(self.content.features[m]) for m in self.content.modalities}
        self.modality_masks = dict(self.content.masks)

    # -- reads ------------------------------------------------------------------------------------------
    def _history(self, user_id: str) -> np.ndarray:
        """The user's live positive items (indices), sorted."""
        return np.array(sorted(self.history.get(user_id, ())), dtype=np.int64)

    def _user_scores(self, user_id: str, hist: np.ndarray) -> np.ndarray:
        """Scores over every catalog item (model items, then items added since training)."""
        if user_id in self.erased or (user_id not in self.model_users and user_id not in self.history):
            raise UnknownUserError(f"unknown user {user_id!r}: no events and not in the model")
        n_model = len(self.model_items)
        with self.lock:
            if user_id in self.model_users and user_id not in self.changed:
                s = self.model.score(np.array([self.model_users[user_id]]))[0]
            else:
                row = hist[hist < n_model]
                h = sp.csr_matrix((np.ones(len(row), np.float32), (np.zeros(len(row), int), row)),
                                  shape=(1, n_model))
                try:
                    s = self.model.score_histories(h)[0]
                except NotSupportedError:
                    if user_id not in self.model_users:
                        raise  # the API answers 501: this model cannot place a user it never saw
                    s = self.model.score(np.array([self.model_users[user_id]]))[0]  # live events wait for a retrain
        full = np.full(len(self.item_ids), -np.inf, np.float32)
        full[:n_model] = s
        if len(self.item_ids) > n_model and self.vectors is not None and len(hist):
            # items added since training: content similarity to the history, on the model's score scale
            profile = self.vectors[hist].mean(axis=0)
            sim = self.vectors @ profile
            known = np.isfinite(s)
            z = (sim - sim[:n_model].mean()) / max(float(sim[:n_model].std()), 1e-6)
            full[n_model:] = float(s[known].mean()) + float(s[known].std()) * z[n_model:]
        return full

    def recommend(self, user_id: str, k: int = 10, *, exclude: list[str] | None = None,
                  diversity: float | None = None, filters: dict[str, Any] | None = None,
                  exclude_seen: bool = True) -> list[Recommended]:
        """Top-``k`` for a user. Filters (``attribute: value``, matching a value or a member of a list
        attribute) and exclusions are applied before the top-k, so ``k`` items come back whenever ``k``
        items pass. ``diversity`` in (0, 1] re-ranks with MMR at λ = 1 − diversity."""
        hist = self._history(user_id)
        if self.ann is not None and not diversity:
            fast = self._recommend_ann(user_id, k, hist if exclude_seen else hist[:0], exclude, filters)
            if fast is not None:
                return fast
        scores = self._user_scores(user_id, hist)
        if exclude_seen and len(hist):
            scores[hist] = -np.inf
        for item in exclude or []:
            if item in self.index:
                scores[self.index[item]] = -np.inf
        if filters:
            scores[~self._filter_mask(filters)] = -np.inf
        if diversity and self.vectors is not None:
            pool, pool_scores = top_k(scores[None], min(len(scores), max(5 * k, 50)))
            keep = np.isfinite(pool_scores[0])
            chosen = mmr(pool[0][keep], pool_scores[0][keep], self.vectors, k, 1.0 - diversity)
        else:
            top, top_scores = top_k(scores[None], k)
            chosen = top[0][np.isfinite(top_scores[0])]
        return self._describe_all([int(i) for i in chosen], [float(scores[i]) for i in chosen], hist)

    def _recommend_ann(self, user_id: str, k: int, hist: np.ndarray, exclude: list[str] | None,
                       filters: dict[str, Any] | None) -> list[Recommended] | None:
        """Top-k from the HNSW index, or ``None`` where exact scoring must answer: users the index has
        no vector for (new or with live events), items added since training, or too few hits passing
        the exclusions and filters."""
        if (user_id not in self.model_users or user_id in self.changed or user_id in self.erased
                or len(self.item_ids) > len(self.model_items)):
            return None
        blocked = set(hist.tolist()) | {self.index[i] for i in exclude or [] if i in self.index}
        want = k + len(blocked) + 10 if not filters else 4 * k + len(blocked) + 50
        with self.lock:
            ids, scores = self.ann.search(self._user_vectors[self.model_users[user_id]][None], want)
        keep = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in blocked]
        if filters:
            mask = self._filter_mask(filters)
            keep = [(i, s) for i, s in keep if mask[i]]
        if len(keep) < k:
            return None
        return self._describe_all([i for i, _ in keep[:k]], [s for _, s in keep[:k]], hist)

    def _filter_mask(self, filters: dict[str, Any]) -> np.ndarray:
        """Items passing every ``attribute: value`` filter; one mask per pair, built once and kept until
        the catalog changes (a scan of every item's attributes is too slow per request)."""
        cache = self._masks
        mask = np.ones(len(self.item_ids), bool)
        for key, want in filters.items():
            if (key, str(want)) not in cache:
                m = np.zeros(len(self.item_ids), bool)
                for i, attrs in enumerate(self.attributes):
                    have = attrs.get(key)
                    m[i] = (str(want) in map(str, have)) if isinstance(have, list) else str(have) == str(want)
                cache[(key, str(want))] = m
            mask &= cache[(key, str(want))]
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
        sims = vec @ vec[i]
        sims[i] = -np.inf
        if modality is not None:
            sims[~self.modality_masks[modality]] = -np.inf
        top, vals = top_k(sims[None], k)
        return [Recommended(self.item_ids[j], self.titles[j], float(v), attributes=self.attributes[j])
                for j, v in zip(top[0], vals[0]) if np.isfinite(v)]

    def search(self, query: str, k: int = 10, user_id: str | None = None) -> list[Recommended]:
        """Items whose text is nearest to a natural-language query (the text encoder the catalog was
        encoded with embeds the query). With ``user_id``, ties in meaning are broken towards the user's
        taste: 80% query match, 20% the user's score (both rescaled to [0, 1])."""
        if not query.strip():
            raise MosaicError("query is empty")
        if "text" not in self.modality_vectors:
            raise NotSupportedError("search needs text content (encode with a text encoder)")
        enc = self._encoder("text")
        with self.lock:
            q = enc.encode([query])[0]
        sims = self.modality_vectors["text"] @ _normalise(q[None])[0]
        sims[~self.modality_masks["text"]] = -np.inf
        if user_id is not None:
            s = self._user_scores(user_id, self._history(user_id))
            finite = np.isfinite(s) & np.isfinite(sims)
            both = np.full_like(sims, -np.inf)
            both[finite] = 0.8 * _unit(sims[finite]) + 0.2 * _unit(s[finite])
            sims = both
        top, vals = top_k(sims[None], k)
        return [Recommended(self.item_ids[j], self.titles[j], float(v), attributes=self.attributes[j])
                for j, v in zip(top[0], vals[0]) if np.isfinite(v)]

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
        store, then to live histories. Unknown items are refused before anything is written."""
        unknown = sorted(set(events["item_id"].astype(str)) - set(self.index))
        if unknown:
            raise UnknownItemError(f"unknown item {unknown[0]!r} in events ({len(unknown)} unknown); "
                                   "add items with POST /items first")
        with self.lock:
            result = self.store.ingest(events=events)
            positive = events if self.threshold is None else events[events["weight"] >= self.threshold]
            for u, i in zip(positive["user_id"].astype(str), positive["item_id"].astype(str)):
                self.history.setdefault(u, set()).add(self.index[i])
                self.changed.add(u)
                self.erased.discard(u)
        return result.events_added

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
        with self.lock:
            self.store.ingest(items=items)
            self._masks.clear()
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
                                              dict(self.content.sources)))
        return ids

    def delete_user(self, user_id: str) -> int:
        """Erase the user's events and profile from the store and from live state."""
        if user_id not in self.model_users and user_id not in self.history:
            raise UnknownUserError(f"unknown user {user_id!r}")
        with self.lock:
            n = self.store.delete_user(user_id)
            self.history.pop(user_id, None)
            self.changed.discard(user_id)
            self.erased.add(user_id)
        return n

    def close(self) -> None:
        """Release the store (the server calls this on shutdown)."""
        self.store.close()

    def health(self) -> dict[str, Any]:
        return {"model": self.model.name, "retrieval": self.retrieval, "reloads": self.reloads,
                "items": len(self.item_ids), "model_items": len(self.model_items),
                "users": len(self.model_users), "live_users": len(self.history),
                "content": self.content.modalities if self.content is not None else [],
                "uptime_s": round(time.time() - self.started, 1)}


def _factors(model: BaseRecommender) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(user vectors, item vectors, item biases) of a model whose scores are u·v + b, else ``None``."""
    U, V = getattr(model, "U_", None), getattr(model, "V_", None)
    if U is None or V is None:
        return None
    return U, V, getattr(model, "b_", getattr(model, "item_bias_", None))


def _unit(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)
