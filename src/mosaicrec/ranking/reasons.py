"""Reasons that are true: which of a user's history items made the model recommend an item, measured by the
model's own scores, and how often a cited reason really carries the recommendation.

A history item's contribution to a recommended item is how much the item's score falls when that one
history item is left out (the user folded in again without it: leave-one-out, one batch of ``|H| + 1``
fold-in rows per user). It needs nothing of the model but scoring a history, so it holds for any model that
folds users in (EASE, ItemKNN, ALS, content and hybrid models), and it is what "because you liked X" should
mean: without X, this item would score lower.

Fidelity of a way of citing reasons: over (user, recommended item) pairs, the share where removing the
cited history item lowers the item's score, and the share where it moves the item down the user's list.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.query import Query


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
