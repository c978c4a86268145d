"""Retrieval: the top-k items for one query vector, exactly or from an HNSW index, with exclusions and
filters honoured *before* the top-k (so ``k`` items come back whenever ``k`` are allowed).

A factor model scores user u and item i as ``q_u·v_i + b_i``; with the query ``[q_u, 1]`` and the item rows
``[v_i, b_i]`` (:func:`~mosaicrec.ranking.ann.augment`) that is one inner product. Both retrievers here take
such a query; a model without item vectors is ranked by :func:`top_allowed` over its scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from mosaicrec.models.base import top_k as rows_top_k
from mosaicrec.ranking.ann import InnerProductIndex


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest entries of a vector, best first (ties: lower index first)."""
    if min(k, len(scores)) <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    ids, vals = rows_top_k(scores[None, :], k)  # the batch path's selection, so both break ties alike
    return ids[0], vals[0]


def warm_top_k() -> None:
    """Compile the top-k kernel for the score types lists use (numba caches it on disk after the first run
    of an install; the first compile takes seconds, which a service pays at start, not in its first requests)."""
    for dtype in (np.float32, np.float64):
        top_k(np.zeros(2, dtype), 1)


def top_allowed(scores: np.ndarray, k: int, allow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best allowed entries of ``scores`` (non-finite scores never returned)."""
    s = scores if allow is None else np.where(allow, scores, -np.inf)
    ids, vals = top_k(s, k)
    keep = np.isfinite(vals)
    return ids[keep], vals[keep]


class Retriever(Protocol):
    """Top-k rows for a query ``[q, 1]`` over a fixed set of item rows."""

    def __len__(self) -> int: ...

    def top(self, query: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best allowed rows (indices) and their scores, best first."""
        ...


class ExactRetriever:
    """Scores every allowed row: exact, and the cheaper path for small catalogs and narrow filters."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows  # [v_i, b_i], float32

    def __len__(self) -> int:
        return len(self.rows)

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.rows @ query

    def top(self, query: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if allow is not None:
            n_allowed = int(np.count_nonzero(allow))
            if n_allowed <= len(self.rows) // 4:  # few rows: copying them out beats scoring every row
                cand = np.flatnonzero(allow)
                ids, vals = top_k(self.rows[cand] @ query, min(k, n_allowed))
                return cand[ids], vals
        return top_allowed(self.scores(query), k, allow)


class HNSWRetriever(ExactRetriever):
    """An HNSW inner-product index over the rows. The allowed mask travels into the graph walk (a faiss ID
    selector), so excluded items cost no result slots. Where the mask leaves at most ``exact_below`` rows
    (and at most a fifth of them), those are scored exactly instead: cheaper than a walk that mostly meets
    disallowed nodes, and exact; where the walk finds too few allowed rows, it falls back to exact too."""

    def __init__(self, rows: np.ndarray, index: InnerProductIndex, exact_below: int = 20_000) -> None:
        super().__init__(rows)
        self.index, self.exact_below = index, exact_below

    @classmethod
    def build(cls, vectors: np.ndarray, biases: np.ndarray | None, rows: np.ndarray,
              exact_below: int = 20_000, cache: Path | None = None) -> HNSWRetriever:
        return cls(rows, InnerProductIndex(vectors, biases, cache=cache), exact_below)

    #: a mask leaving out at most this many rows is applied after the walk (search k + that many, drop the
    #: disallowed): cheaper than building a faiss ID selector over every row for a user's few seen items
    post_filter_below = 256

    def top(self, query: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.rows)
        n_allowed = n if allow is None else int(np.count_nonzero(allow))
        if n_allowed > min(self.exact_below, n // 5):
            n_out = n - n_allowed
            if n_out <= self.post_filter_below:
                ids, vals = (a[0] for a in self.index.search(query[None, :-1], k + n_out))
                keep = (ids >= 0) & np.isfinite(vals)
                if n_out:
                    keep[keep] = allow[ids[keep]]
                ids, vals = ids[keep][:k], vals[keep][:k]
            else:
                ids, vals = (a[0] for a in self.index.search(query[None, :-1], k, allow=allow))
                keep = (ids >= 0) & np.isfinite(vals)
                ids, vals = ids[keep], vals[keep]
            if len(ids) >= min(k, n_allowed):
                return ids.astype(np.int64), vals.astype(np.float32)
        return super().top(query, k, allow)
