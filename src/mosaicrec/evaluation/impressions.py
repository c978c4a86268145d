"""Pointwise metrics over logged impressions: for each feedback label (click, long view, like …), how well a
model's score separates the impressions that got it from those that did not.

* AUC over all test impressions;
* GAUC: the AUC within each user's impressions, averaged with each user weighted by their impressions
  (users whose impressions are all positive or all negative carry no ranking signal and are skipped);
* NDCG@k over each user's impressed items (in each scenario, where a context is named): the list a user was
  shown, re-ranked by the model, with the label as the gain.

A graded label (any value other than 0 and 1, e.g. play time in seconds) has no classes: it is scored by
Spearman's rank correlation over all impressions (``corr``) and within each user (``gcorr``, weighted by
impressions like GAUC, users whose label is constant skipped), and by NDCG@k with ``log(1 + value)`` as gain.

Every model is scored the same way: a multi-task model answers with the head trained for the label (and
its blend elsewhere); any other model with its one score of (user, item) in the impression's context.
Only impressions of users with a training event are scored (the others have no row to score from).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from mosaicrec.data.schema import Interactions, context_floats
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.query import Query
from mosaicrec.models.trainer import auc

__all__ = ["auc", "gauc", "gspearman", "impression_metrics", "is_binary", "list_ndcg", "spearman"]


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


def spearman(labels: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's rank correlation (ties at their mean rank); NaN where either side is constant."""
    from scipy.stats import rankdata

    a, b = rankdata(labels), rankdata(scores)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def gspearman(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Impression-weighted mean of the per-group Spearman correlation over groups whose label varies
    (NaN if none). A group whose scores are all equal counts as 0: the model orders nothing there."""
    labels = np.asarray(labels, np.float64)
    total = weight = 0.0
    for idx in _groups(np.asarray(groups)):
        y = labels[idx]
        if len(idx) < 2 or (y == y[0]).all():
            continue
        r = spearman(y, scores[idx])
        total += (0.0 if np.isnan(r) else r) * len(idx)
        weight += len(idx)
    return total / weight if weight else float("nan")


def is_binary(values: np.ndarray) -> bool:
    """Whether a label column holds only 0 and 1 (a class), not a graded value such as seconds."""
    return bool(np.isin(np.asarray(values), (0.0, 1.0)).all())


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


def event_scores(model: BaseRecommender, events: Interactions, heads: list[str] | None = None
                 ) -> dict[str, np.ndarray]:
    """Each event's score (its user and item, in the event's own context) per head of the model: the
    ranking ``"score"`` and, for a multi-task model, every task's output (by task name and label column);
    ``heads`` keeps those of them the model has."""
    pairs = Query.of_pairs(events)
    wanted = [h for h in dict.fromkeys(heads or model.heads) if h in model.heads]
    return {head: model.score(replace(pairs, head=head)) for head in wanted}


def impression_metrics(model: BaseRecommender, train: Interactions, test: Interactions, labels: list[str],
                       context: str | None = None, k: int = 10, min_impressions: int = 200
                       ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(overall, per context value) metrics ``"<label> auc"``, ``"<label> gauc"`` and ``"<label>
    indcg@k"`` of ``model`` over ``test``'s impressions by users with a ``train`` event (a graded label:
    ``"<label> corr"``, ``"<label> gcorr"`` and ``indcg@k`` on ``log1p``). Per value: values with at least
    ``min_impressions`` scored impressions. Lists for NDCG are one user in one context."""
    warm = np.zeros(test.n_users, bool)
    warm[np.unique(train.users)] = True
    test = test.subset(warm[test.users])
    if not test.n_events:
        return {}, {}
    scores = event_scores(model, test, ["score", *labels])
    ctx = (np.asarray(test.context[context]).astype(str) if context is not None and context in test.context
           else None)
    lists = test.users.astype(np.int64) if ctx is None else \
        test.users.astype(np.int64) * 1000 + np.unique(ctx, return_inverse=True)[1]

    values = {label: context_floats(test, label) for label in labels}
    binary = {label: is_binary(v) for label, v in values.items()}

    def measure(rows: np.ndarray) -> dict[str, float]:
        out: dict[str, Any] = {"impressions": float(len(rows))}
        for label in labels:
            y = values[label][rows]
            s = scores.get(label, scores["score"])[rows]
            if binary[label]:
                out[f"{label} auc"] = auc(y, s)
                out[f"{label} gauc"] = gauc(test.users[rows], y, s)
                out[f"{label} indcg@{k}"] = list_ndcg(lists[rows], y, s, k)
            else:
                out[f"{label} corr"] = spearman(y, s)
                out[f"{label} gcorr"] = gspearman(test.users[rows], y, s)
                out[f"{label} indcg@{k}"] = list_ndcg(lists[rows], np.log1p(np.maximum(y, 0.0)), s, k)
        return out

    overall = measure(np.arange(test.n_events))
    by_value: dict[str, dict[str, float]] = {}
    if ctx is not None:
        for value in np.unique(ctx):
            rows = np.flatnonzero(ctx == value)
            if len(rows) >= min_impressions:
                by_value[str(value)] = measure(rows)
    return overall, by_value
