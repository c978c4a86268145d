"""Approximate maximum-inner-product retrieval with faiss HNSW, exact where the catalog is small.

Scores of factor models are ``u·v_i + b_i``; appending 1 to the query and ``b_i`` to each item turns that
into one inner product, which HNSW (``METRIC_INNER_PRODUCT``) searches directly. Exclusions (seen items,
filters) are honoured *before* the top-k, inside the graph walk (a faiss ID selector), so a filtered
request still returns ``k`` items whenever ``k`` pass; where a filter is narrow the caller scores the
passing items exactly instead, which is then both cheaper and exact.
"""

from __future__ import annotations

import os

import numpy as np


def augment(vectors: np.ndarray, biases: np.ndarray | None = None) -> np.ndarray:
    """``[v_i, b_i]`` rows (float32, contiguous): with a query ``[q, 1]`` one inner product is ``q·v_i + b_i``."""
    out = np.empty((len(vectors), vectors.shape[1] + 1), np.float32)
    out[:, :-1], out[:, -1] = vectors, 0.0 if biases is None else biases
    return out


class InnerProductIndex:
    """HNSW over item vectors (``n × d``) with optional biases."""

    def __init__(self, vectors: np.ndarray, biases: np.ndarray | None = None, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 96, threads: int = 0) -> None:
        """``threads``: OpenMP threads for the build (0: all cores). Searches use one thread: a server
        asks one query at a time, and idle OpenMP workers spin on the cores the requests need."""
        import faiss

        faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
        items = augment(vectors, biases)
        self.index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(items)  # faiss keeps its own copy
        faiss.omp_set_num_threads(1)
        self.ef_search = ef_search

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray, biases: np.ndarray | None = None) -> None:
        """Append items (their indices continue from ``len(self)``)."""
        self.index.add(augment(vectors, biases))

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores per query row (``-1`` where the index has fewer).

        ``allow`` (a boolean mask over the indexed items) restricts the search to those items inside the
        graph walk, so excluded and filtered items cost no result slots. Under a narrow mask HNSW may find
        fewer than ``k`` (its walk passes through disallowed nodes): score the allowed items exactly then.
        """
        import faiss

        q = np.empty((len(queries), queries.shape[1] + 1), np.float32)
        q[:, :-1], q[:, -1] = queries, 1.0
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        if allow is not None:
            bits = np.packbits(allow[:self.index.ntotal], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(self.index.ntotal, faiss.swig_ptr(bits))
        scores, ids = self.index.search(q, k, params=params)
        return ids, scores


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k found by the approximate top-k (rows are queries)."""
    hits = sum(len(set(a[a >= 0]) & set(e[e >= 0])) for a, e in zip(approx, exact))
    return hits / max(1, int((exact >= 0).sum()))
