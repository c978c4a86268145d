"""Approximate maximum-inner-product retrieval with faiss HNSW, exact where the catalog is small.

Scores of factor models are ``u·v_i + b_i``; appending 1 to the query and ``b_i`` to each item turns that
into one inner product, which HNSW (``METRIC_INNER_PRODUCT``) searches directly. Exclusions (seen items,
filters) are honoured *before* the top-k: the index is asked for ``k`` plus the number of excluded items
(and a margin), excluded hits are dropped, and if fewer than ``k`` remain the caller falls back to exact
scoring, so a filtered request still returns ``k`` items whenever ``k`` pass.
"""

from __future__ import annotations

import numpy as np


class InnerProductIndex:
    """HNSW over item vectors (``n × d``) with optional biases."""

    def __init__(self, vectors: np.ndarray, biases: np.ndarray | None = None, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, threads: int = 0) -> None:
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        b = np.zeros(len(vectors), np.float32) if biases is None else biases.astype(np.float32)
        self.items = np.ascontiguousarray(np.hstack([vectors.astype(np.float32), b[:, None]]))
        self.index = faiss.IndexHNSWFlat(self.items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(self.items)
        self.ef_search = ef_search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per query row (``-1`` where the index has fewer)."""
        import faiss

        q = np.ascontiguousarray(np.hstack([queries.astype(np.float32), np.ones((len(queries), 1), np.float32)]))
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, ids = self.index.search(q, k, params=params)
        return ids, scores


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate top-k (rows are queries)."""
    hits = sum(len(set(a[a >= 0]) & set(e[e >= 0])) for a, e in zip(approx, exact))
    return hits / max(1, int((exact >= 0).sum()))
