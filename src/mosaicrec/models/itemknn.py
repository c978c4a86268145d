"""Item-based k-nearest-neighbours on the sparse user×item matrix (cosine similarity)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.models import _kernels
from mosaicrec.models.prior import NewUserPrior, PriorConfig
from mosaicrec.models.query import Query
from mosaicrec.models.base import BaseRecommender, ModelConfig, csr_from_state, csr_state
from mosaicrec.models.registry import register


class ItemKNNConfig(PriorConfig, ModelConfig):
    neighbors: int = Field(50, ge=1, description="similar items kept per item")
    shrink: float = Field(0.0, ge=0.0, description="cosine shrinkage: sim·n/(n+shrink) damps rare co-counts")


@register("itemknn")
class ItemKNN(NewUserPrior, BaseRecommender):
    """score(u, j) = Σ_i x_ui · sim(i, j) over the ``neighbors`` most similar items i of each item.

    A numba kernel walks the co-occurrences item by item in parallel (never forming the dense n×n
    matrix), so memory stays bounded for large catalogs; only the kept neighbours are stored, sparse.
    """

    Config = ItemKNNConfig

    def _fit(self, train: Interactions) -> None:
        self._fit_prior(train)
        X = train.matrix
        n = X.shape[1]
        # column norms and scaling straight on the CSR arrays (no sparse products)
        norms = np.sqrt(np.bincount(X.indices, weights=X.data.astype(np.float64) ** 2, minlength=n))
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
        Xn = sp.csr_matrix((X.data * inv[X.indices], X.indices, X.indptr), shape=X.shape)
        XnT = Xn.T.tocsr()
        k = min(self.config.neighbors, max(1, n - 1))
        _kernels.set_threads()
        idx, val = _kernels.item_knn(XnT.indptr, XnT.indices, XnT.data, Xn.indptr, Xn.indices, Xn.data,
                                     k, float(self.config.shrink), max(1, min(n, 64)))
        keep = idx.ravel() >= 0
        rows = np.repeat(np.arange(n), k)[keep]
        # S[i, j]: similarity of neighbour j to item i, so that scores = X_u @ S.
        self.similarity_ = sp.csr_matrix((val.ravel()[keep], (rows, idx.ravel()[keep])), shape=(n, n),
                                         dtype=np.float32)
        self._X = train.matrix

    def _scores(self, query: Query) -> np.ndarray:
        if query.new_users:
            return self._prior((query.history @ self.similarity_).toarray(), query)
        return np.asarray((self._X[query.users] @ self.similarity_).toarray(), dtype=np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar items of one item (by training co-occurrence), best first."""
        row = self.similarity_[item]
        order = np.argsort(-row.data, kind="stable")[:k]
        return row.indices[order], row.data[order]

    def _state(self) -> dict[str, np.ndarray]:
        return {**csr_state("S", self.similarity_), **csr_state("X", self._X), **self._prior_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity_ = csr_from_state("S", state)
        self._X = csr_from_state("X", state)
        self._set_prior_state(state)
