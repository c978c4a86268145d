"""Reasons that are true: which of a user's history items made the model recommend an item, measured by the
model's own scores, and how often a cited reason really carries the recommendation.

A history item's contribution to a recommended item is how much the item's score falls when that one
history item is left out (the user folded in again without it: leave-one-out, one batch of ``|H| + 1``
fold-in rows per user). It needs nothing of the model but scoring a history, so it holds for any model that
folds users in (EASE, ItemKNN, ALS, content and hybrid models), and it is what "because you liked X" should
mean: without X, this item would score lower.

Fidelity of a way of citing reasons: over (user, recommended item) pairs, the share where removing the
cited history item lowers the item's score, and the share where it moves the item down the user's list.

:func:`explain_list` is the pipeline's explanation step: each item of a list cites one of the user's recent
likes (never a dislike), by content or by the model, with the modality in which the two are most alike and,
given a knowledge graph, the path that links them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from mosaicrec.data.kg import KnowledgeGraph
from mosaicrec.errors import MosaicError, NotSupportedError
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.query import Query
from mosaicrec.ranking.lists import ItemList, Reason
from mosaicrec.ranking.rerank import explain
from mosaicrec.ranking.snapshot import Snapshot


def leave_one_out_scores(model: BaseRecommender, history: np.ndarray, n_items: int,
                         weights: np.ndarray | None = None) -> np.ndarray:
    """``(|H| + 1) × n_items`` scores: row 0 with the whole history, row 1 + j without ``history[j]``."""
    history = np.asarray(history, np.int64)
    w = np.ones(len(history), np.float32) if weights is None else np.asarray(weights, np.float32)
    m = len(history)
    rows = np.concatenate([np.zeros(m, np.int64), np.repeat(np.arange(1, m + 1), m - 1)])
    keep = ~np.eye(m, dtype=bool)
    cols = np.concatenate([history, np.tile(history, m)[keep.ravel()]])
    vals = np.concatenate([w, np.tile(w, m)[keep.ravel()]])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(m + 1, n_items))
    return model.score(Query(history=matrix, exclude_seen=False))


def contributions(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``len(items) × |H|``: each history item's contribution (score drop when it is left out) to each item,
    from :func:`leave_one_out_scores`."""
    return scores[0, items][:, None] - scores[1:, items].T


def cite_by_model(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per item, the position in the history of its largest contributor (-1 where none contributes)."""
    c = contributions(scores, items)
    best = c.argmax(axis=1)
    return np.where(c[np.arange(len(items)), best] > 0, best, -1)


def fidelity(model: BaseRecommender, histories: list[np.ndarray], n_items: int, k: int,
             citers: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]],
             max_history: int = 50,
             on_cited: Callable[[str, np.ndarray, np.ndarray], None] | None = None) -> dict[str, dict[str, float]]:
    """For each way of citing (``citer(history, items, loo_scores) -> position in history per item``, -1
    for no reason), over each user's top ``k`` (history excluded): the share of cited reasons whose removal
    lowers the item's score (``score``) and its rank (``rank``), and the share of items given a reason
    (``cited``). Histories are cut to their last ``max_history`` items (the service cites recent likes).
    ``on_cited(name, items, cited)`` sees each user's recommended items that got a reason and the history
    items cited for them."""
    hits = {name: {"score": 0, "rank": 0, "cited": 0, "pairs": 0} for name in citers}
    for hist in histories:
        hist = np.asarray(hist, np.int64)[-max_history:]
        if len(hist) < 2:
            continue
        loo = leave_one_out_scores(model, hist, n_items)
        full = loo[0].copy()
        full[hist] = -np.inf
        top = np.argsort(-full, kind="stable")[:k]
        for name, citer in citers.items():
            pos = citer(hist, top, loo)
            if on_cited is not None:
                given = np.asarray(pos) >= 0
                on_cited(name, top[given], hist[np.asarray(pos)[given]])
            for item, j in zip(top.tolist(), pos.tolist()):
                hits[name]["pairs"] += 1
                if j < 0:
                    continue
                hits[name]["cited"] += 1
                without = loo[1 + j].copy()
                without[np.delete(hist, j)] = -np.inf
                without[hist[j]] = -np.inf  # the removed item is still one the user has seen
                lower = without[item] < loo[0, item] - 1e-7 * max(1.0, abs(loo[0, item]))
                hits[name]["score"] += int(lower)
                rank_before = int((full > full[item]).sum())
                rank_after = int((without > without[item]).sum())
                hits[name]["rank"] += int(rank_after > rank_before)
    out = {}
    for name, h in hits.items():
        n_cited = max(h["cited"], 1)
        out[name] = {"score": h["score"] / n_cited, "rank": h["rank"] / n_cited,
                     "cited": h["cited"] / max(h["pairs"], 1), "pairs": h["pairs"]}
    return out


class KGIndex:
    """An item knowledge graph by item id, with each item's facts and the entity degrees computed once."""

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


def explain_list(snap: Snapshot, shown: ItemList, hist: np.ndarray, *, by_model: bool = False,
                 lock: threading.RLock | None = None, kg: KGIndex | None = None) -> ItemList:
    """``shown`` with a reason per item, citing the user's recent likes ``hist`` (catalog rows, oldest
    first): "similar to X (closest in <modality>)" by content over the last 200, or with ``by_model``
    "because you liked X" by the model's own scores over the last 50 (falling back to content where the
    model cannot tell: an item it never trained on, a model without fold-in). ``lock`` serialises the
    model's fold-ins."""
    cat, cv = snap.catalog, snap.content
    items = shown.items
    found = explain(items, hist[-200:], cv.modality_vectors, cv.modality_masks) if cv is not None else \
        [(None, None)] * len(items)
    cited = _model_reasons(snap, items, hist[-50:], lock) if by_model and len(hist) else {}
    reasons: list[Reason | None] = []
    for i, (h, modality) in zip(items.tolist(), found):
        if i in cited:
            h = cited[i]
            modality = (explain(np.array([i]), np.array([h]), cv.modality_vectors, cv.modality_masks)[0][1]
                        if cv is not None else None)
            text = f"because you liked {cat.titles[h]}" + (f" (alike in {modality})" if modality else "")
        elif h is not None:
            text = f"similar to {cat.titles[h]} (closest in {modality})"
        else:
            reasons.append(None)
            continue
        path = kg.path(cat.ids[i], cat.ids[h], cat.titles[h]) if kg is not None else None
        reasons.append(Reason(int(h), modality, text, path))
    return shown.with_reasons(reasons)


def _model_reasons(snap: Snapshot, items: np.ndarray, hist: np.ndarray, lock: threading.RLock | None
                   ) -> dict[int, int]:
    """Catalog item → the liked catalog item contributing most to its score (leave-one-out through the
    model's fold-in). Items and likes outside the model's catalog have no model reason."""
    n_model = snap.n_model
    mine = hist[hist < n_model]
    inside = items[items < n_model]
    if len(mine) < 1 or not len(inside):
        return {}
    try:
        with lock if lock is not None else threading.RLock():
            loo = leave_one_out_scores(snap.view.model, mine, n_model)
    except (NotSupportedError, MosaicError):
        return {}
    best = cite_by_model(loo, inside)
    return {int(i): int(mine[b]) for i, b in zip(inside.tolist(), best.tolist()) if b >= 0}
