"""Pointwise metrics over logged impressions: for each feedback label (click, long view, like …), how well a
model's score separates the impressions that got it from those that did not.

* AUC over all test impressions;
* GAUC: the AUC within each user's impressions, averaged with each user weighted by their impressions
  (users whose impressions are all positive or all negative carry no ranking signal and are skipped);
* NDCG@k over each user's impressed items (in each scenario, where a context is named): the list a user was
  shown, re-ranked by the model, with the label as the gain.

Every model is scored the same way: a multi-task model answers with the head trained for the label (and
its blend elsewhere); any other model with its one score of (user, item) in the impression's context.
Only impressions of users with a training event are scored (the others have no row to score from).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mosaicrec.data.schema import Interactions, context_floats
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.trainer import auc

__all__ = ["auc", "gauc", "impression_metrics", "list_ndcg"]


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1], True])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def gauc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of the per-group AUC over groups holding both classes (NaN if none)."""
    labels = np.asarray(labels) > 0
    total = weight = 0.0
    for idx in _groups(np.asarray(groups)):
        y = labels[idx]
        if y.all() or not y.any():
            continue
        total += auc(y, scores[idx]) * len(idx)
        weight += len(idx)
    return total / weight if weight else float("nan")


def list_ndcg(groups: np.ndarray, gains: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of each group's items ranked by score (gain: the label), over groups with a gain."""
    gains = np.asarray(gains, np.float64)
    out = []
    for idx in _groups(np.asarray(groups)):
        g = gains[idx]
        if not (g > 0).any():
            continue
        top = g[np.argsort(-scores[idx], kind="stable")][:k]
        ideal = np.sort(g)[::-1][:k]
        disc = 1.0 / np.log2(np.arange(2, len(top) + 2))
        out.append(float((top * disc).sum() / (ideal * disc[:len(ideal)]).sum()))
    return float(np.mean(out)) if out else float("nan")


def impression_metrics(model: BaseRecommender, train: Interactions, test: Interactions, labels: list[str],
                       context: str | None = None, k: int = 10, min_impressions: int = 200
                       ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(overall, per context value) metrics ``"<label> auc"``, ``"<label> gauc"`` and ``"<label>
    indcg@k"`` of ``model`` over ``test``'s impressions by users with a ``train`` event. Per value: values
    with at least ``min_impressions`` scored impressions. Lists for NDCG are one user in one context."""
    warm = np.zeros(test.n_users, bool)
    warm[np.unique(train.users)] = True
    test = test.subset(warm[test.users])
    if not test.n_events:
        return {}, {}
    scores = model.score_events(test)
    ctx = (np.asarray(test.context[context]).astype(str) if context is not None and context in test.context
           else None)
    lists = test.users.astype(np.int64) if ctx is None else \
        test.users.astype(np.int64) * 1000 + np.unique(ctx, return_inverse=True)[1]

    def measure(rows: np.ndarray) -> dict[str, float]:
        out: dict[str, Any] = {"impressions": float(len(rows))}
        for label in labels:
            y = context_floats(test, label)[rows]
            s = scores.get(label, scores["score"])[rows]
            out[f"{label} auc"] = auc(y, s)
            out[f"{label} gauc"] = gauc(test.users[rows], y, s)
            out[f"{label} indcg@{k}"] = list_ndcg(lists[rows], y, s, k)
        return out

    overall = measure(np.arange(test.n_events))
    by_value: dict[str, dict[str, float]] = {}
    if ctx is not None:
        for value in np.unique(ctx):
            rows = np.flatnonzero(ctx == value)
            if len(rows) >= min_impressions:
                by_value[str(value)] = measure(rows)
    return overall, by_value
