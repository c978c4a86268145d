"""Ranking, beyond-accuracy and rating metrics.

Accuracy metrics take ``hits``, a (users × K) boolean array saying whether the item at each rank is
relevant, and ``n_relevant``, each user's number of relevant test items; they return one value per user,
so callers can average, slice by user group, or bootstrap. Definitions (rank r counted from 1):

* Precision@K = hits in top K / K
* Recall@K    = hits in top K / n_relevant
* HitRate@K   = 1 if any hit in top K
* MRR@K       = 1 / rank of the first hit (0 if none)
* NDCG@K      = Σ_r hit_r / log2(r + 1)  ÷  Σ_{r ≤ min(n_relevant, K)} 1 / log2(r + 1)
* MAP@K       = Σ_r Precision@r · hit_r / min(n_relevant, K)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def _k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].astype(np.float64)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _k(hits, k).sum(axis=1) / k


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return _k(hits, k).sum(axis=1) / np.maximum(n_relevant, 1)


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return (_k(hits, k).sum(axis=1) > 0).astype(np.float64)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = _k(hits, k)
    first = np.argmax(h > 0, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = _k(hits, k)
    discount = 1.0 / np.log2(np.arange(2, h.shape[1] + 2))
    dcg = h @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    idcg = ideal[np.minimum(n_relevant, h.shape[1])]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = _k(hits, k)
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    denom = np.minimum(n_relevant, h.shape[1])
    return np.divide((prec_at_r * h).sum(axis=1), denom, out=np.zeros(len(h)), where=denom > 0)


#: name in config files → per-user metric function (the only place these names are spelled)
ACCURACY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "precision": precision, "recall": recall, "ndcg": ndcg, "map": average_precision, "mrr": mrr,
    "hitrate": hit_rate,
}


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    return float(len(np.unique(top[top >= 0])) / n_items)


def novelty(top: np.ndarray, item_popularity: np.ndarray) -> float:
    """Mean self-information −log2 p(i) of recommended items, p(i) = share of training users who
    interacted with i (unseen items count as seen by one user, so the value stays finite)."""
    valid = top >= 0
    p = item_popularity[np.where(valid, top, 0)]
    info = -np.log2(np.clip(p, 1e-12, 1.0))
    return float(info[valid].mean()) if valid.any() else 0.0


def intra_list_diversity(top: np.ndarray, item_vectors: np.ndarray | sp.spmatrix) -> float:
    """Mean over lists of the mean pairwise cosine distance (1 − cos) between the listed items' vectors."""
    vecs = item_vectors.toarray() if sp.issparse(item_vectors) else np.asarray(item_vectors, np.float64)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = np.divide(vecs, norms, out=np.zeros_like(vecs, dtype=np.float64), where=norms > 0)
    values = []
    for row in top:
        row = row[row >= 0]
        if len(row) < 2:
            continue
        v = vecs[row]
        sim = v @ v.T
        n = len(row)
        values.append(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))
    return float(np.mean(values)) if values else 0.0


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - actual)))
