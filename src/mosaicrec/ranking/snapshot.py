"""The immutable state a request reads: model, catalog, content and their indexes, as one value.

A request takes the service's current :class:`Snapshot` once and reads only from it, so it sees one
consistent state however many items are added or models reloaded meanwhile (a search could once see 1,708
content rows against 1,707 catalog rows). A change builds a new snapshot beside the old one and swaps the
reference; nothing a snapshot holds is changed in place (the HNSW indexes cover the rows they were built
on; rows added later are scored exactly and merged).

Catalog order: the model's items first, in the model's order (row ``i < n_model`` is model item ``i``),
then items the model never saw. Those are scored through **content proxies**: each is a softmax-weighted mix
of its ``proxy_k`` nearest model items by content, so its score is the same mix of their scores (for a
factor model, its vector the same mix of their vectors), on the model's own scale: a byte-identical copy of
an item scores as that item does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from mosaicrec.data.content import ItemContent
from mosaicrec.fusion import concat_features
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.training import TrainingInfo
from mosaicrec.ranking.ann import InnerProductIndex, augment
from mosaicrec.ranking.filters import AttributeFilter
from mosaicrec.ranking.retrieval import ExactRetriever, HNSWRetriever, Retriever


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Catalog:
    """Item ids, titles and attributes in serving order, and the attribute filter over them."""

    ids: tuple[str, ...]
    index: dict[str, int]
    titles: tuple[str, ...]
    attributes: tuple[dict[str, Any], ...]
    filter: AttributeFilter

    @classmethod
    def build(cls, ids: list[str], titles: list[str], attributes: list[dict[str, Any]]) -> Catalog:
        attributes = tuple(attributes)
        return cls(tuple(ids), {i: k for k, i in enumerate(ids)}, tuple(titles), attributes,
                   AttributeFilter(attributes))

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def arrow_ids(self) -> pa.Array:
        """The ids as one Arrow array (built on first use): the impression log encodes items against it."""
        return pa.array(self.ids, type=pa.string())

    def with_rows(self, rows: pd.DataFrame) -> Catalog:
        """A catalog with these canonical item rows: new ids appended, existing ones replaced."""
        ids, titles, attrs = list(self.ids), list(self.titles), list(self.attributes)
        for item_id, title, attributes in zip(rows["item_id"].astype(str), rows["title"], rows["attributes"]):
            k = self.index.get(item_id)
            title = str(title or item_id)
            if k is None:
                ids.append(item_id), titles.append(title), attrs.append(dict(attributes or {}))
            else:
                titles[k], attrs[k] = title, dict(attributes or {})
        return Catalog.build(ids, titles, attrs)

    def reordered(self, model_items: list[str]) -> Catalog:
        """The same items with ``model_items`` first (a reloaded model's order), then the rest as before.
        Every model item must be in the catalog (the service refuses a model of another catalog first)."""
        known = set(model_items)
        order = [self.index[i] for i in model_items] + [k for k, i in enumerate(self.ids) if i not in known]
        return Catalog.build([self.ids[k] for k in order], [self.titles[k] for k in order],
                             [self.attributes[k] for k in order])


@dataclass(frozen=True)
class ContentView:
    """Item content aligned to a catalog: per-modality and fused unit vectors, and an HNSW index over the
    fused ones covering rows ``[0, n_indexed)`` except ``stale`` rows (changed since it was built)."""

    content: ItemContent
    vectors: np.ndarray
    modality_vectors: dict[str, np.ndarray]
    modality_masks: dict[str, np.ndarray]
    index: InnerProductIndex | None = None
    n_indexed: int = 0
    stale: frozenset[int] = frozenset()
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # text → other modality maps, filled on use

    @classmethod
    def build(cls, content: ItemContent, ids: tuple[str, ...], with_index: bool,
              cache: Path | None = None) -> ContentView | None:
        """``cache``: a folder the index is mapped from or saved in (:class:`InnerProductIndex`)."""
        aligned = content.align(np.array(ids, dtype=object))
        if not aligned.modalities:
            return None
        vectors = normalise(concat_features(aligned, aligned.modalities))
        index = InnerProductIndex(vectors, cache=cache) if with_index else None
        return cls(aligned, vectors, {m: normalise(aligned.features[m]) for m in aligned.modalities},
                   dict(aligned.masks), index, len(vectors) if index is not None else 0)

    def with_rows(self, ids: tuple[str, ...], rows: list[int], got: ItemContent) -> ContentView:
        """The content with ``rows`` (catalog indices, possibly past the end) set from ``got`` (aligned to
        them); the index is kept and the changed rows it covers become stale."""
        n = len(ids)
        feats, masks = {}, {}
        for m in self.content.modalities:
            f = np.zeros((n, self.content.features[m].shape[1]), np.float32)
            f[:len(self.content.item_ids)] = self.content.features[m]
            mk = np.zeros(n, bool)
            mk[:len(self.content.item_ids)] = self.content.masks[m]
            if m in got.features:
                f[rows], mk[rows] = got.features[m], got.masks[m]
            feats[m], masks[m] = f, mk
        content = ItemContent(np.array(ids, dtype=object), feats, masks, dict(self.content.sources))
        vectors = normalise(concat_features(content, content.modalities))
        stale = self.stale | {r for r in rows if r < self.n_indexed}
        return ContentView(content, vectors, {m: normalise(feats[m]) for m in feats}, masks, self.index,
                           self.n_indexed, frozenset(stale))

    def similarity(self, rows: np.ndarray, targets: int) -> np.ndarray:
        """Cosine of each of ``rows`` to each of the first ``targets`` items, averaged over the modalities
        both have (``-inf`` where they share none): ``len(rows) × targets``."""
        total = np.zeros((len(rows), targets), np.float32)
        count = np.zeros((len(rows), targets), np.float32)
        for m, vec in self.modality_vectors.items():
            both = self.modality_masks[m][rows][:, None] & self.modality_masks[m][:targets][None, :]
            total += np.where(both, vec[rows] @ vec[:targets].T, 0.0)
            count += both
        return np.where(count > 0, total / np.maximum(count, 1), -np.inf).astype(np.float32)


@dataclass(frozen=True)
class ModelView:
    """A trained model as served: its users, and for factor models the ``[v_i, b_i]`` rows and a retriever."""

    model: BaseRecommender
    info: TrainingInfo
    users: dict[str, int]
    item_index: dict[str, int]
    rows: np.ndarray | None
    retriever: Retriever | None

    @property
    def n_items(self) -> int:
        return len(self.model.item_ids)

    @classmethod
    def build(cls, model: BaseRecommender, info: TrainingInfo, use_ann: bool, exact_below: int,
              cache: Path | None = None) -> ModelView:
        factors = model.item_factors()
        rows = retriever = None
        if factors is not None:
            V, b = factors
            rows = augment(V, b)
            retriever = HNSWRetriever.build(V, b, rows, exact_below, cache) if use_ann else ExactRetriever(rows)
        return cls(model, info, {str(u): k for k, u in enumerate(model.user_ids)},
                   {str(i): k for k, i in enumerate(model.item_ids)}, rows, retriever)


@dataclass(frozen=True)
class Proxies:
    """Items added since training, placed through their nearest model items by content: row ``j`` is the
    catalog item ``n_model + j``; ``weights`` (``n_extra × n_model``) mixes model items' scores; ``placed``
    is ``False`` for an item with no content to place it by (never ranked for a user); ``rows`` are the
    mixed ``[v, b]`` rows for factor models."""

    weights: sp.csr_matrix
    placed: np.ndarray
    rows: np.ndarray | None

    @classmethod
    def build(cls, view: ModelView, content: ContentView | None, n_catalog: int, k: int = 20,
              temperature: float = 0.02) -> Proxies:
        n_model, n_extra = view.n_items, n_catalog - view.n_items
        if n_extra <= 0 or content is None:
            w = sp.csr_matrix((max(n_extra, 0), n_model), dtype=np.float32)
            return cls(w, np.zeros(max(n_extra, 0), bool), None if view.rows is None else np.zeros(
                (max(n_extra, 0), view.rows.shape[1]), np.float32))
        sims = content.similarity(np.arange(n_model, n_catalog), n_model)
        kk = min(k, n_model)
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        s = np.take_along_axis(sims, top, axis=1)
        finite = np.isfinite(s)
        placed = finite.any(axis=1)
        best = np.where(finite, s, -np.inf).max(axis=1)
        # softmax over the neighbours' cosines: a near-duplicate (cosine 1) dominates, so a copy of an item
        # scores as that item does; a new item among many similar ones gets their blend
        with np.errstate(invalid="ignore", over="ignore"):
            z = np.where(finite, (s - best[:, None]) / temperature, -np.inf)
        w = np.where(finite, np.exp(z), 0.0)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        weights = sp.csr_matrix((w.ravel().astype(np.float32), (np.repeat(np.arange(n_extra), kk), top.ravel())),
                                shape=(n_extra, n_model))
        weights.eliminate_zeros()
        rows = None if view.rows is None else np.asarray(weights @ view.rows, np.float32)
        return cls(weights, placed, rows)


@dataclass(frozen=True)
class Snapshot:
    """Everything a request reads, as of one moment (see the module docstring)."""

    version: int
    view: ModelView
    catalog: Catalog
    content: ContentView | None
    proxies: Proxies
    popularity: np.ndarray  # distinct users with a positive event, per catalog item (the cold-start list)
    use_ann: bool
    #: ``[v, b]`` rows of every catalog item (model items, then the added ones through their proxies)
    rows_all: np.ndarray | None = None

    @property
    def n_model(self) -> int:
        return self.view.n_items


def make_snapshot(version: int, view: ModelView, catalog: Catalog, content: ContentView | None,
                  popularity: dict[str, int], use_ann: bool) -> Snapshot:
    """A snapshot with its derived parts (proxies of added items, the rows of every item, popularity)."""
    proxies = Proxies.build(view, content, len(catalog))
    rows_all = view.rows
    if view.rows is not None and proxies.rows is not None and len(proxies.rows):
        rows_all = np.vstack([view.rows, proxies.rows])
    pop = np.fromiter((popularity.get(i, 0) for i in catalog.ids), np.float32, len(catalog))
    return Snapshot(version, view, catalog, content, proxies, pop, use_ann, rows_all)
