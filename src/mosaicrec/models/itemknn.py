"""Item-based k-nearest-neighbours on the sparse user×item matrix (cosine similarity)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.models.base import BaseRecommender, ModelConfig, csr_from_state, csr_state, register


class ItemKNNConfig(ModelConfig):
    neighbors: int = Field(50, ge=1, description="similar items kept per item")
    shrink: float = Field(0.0, ge=0.0, description="cosine shrinkage: sim·n/(n+shrink) damps rare co-counts")
    block_items: int = Field(0, ge=0, description="items per similarity block (0: sized to ~128 MB)")


@register("itemknn")
class ItemKNN(BaseRecommender):
    """score(u, j) = Σ_i x_ui · sim(i, j) over the ``neighbors`` most similar items i of each item.

    The similarity is computed block by block (a block of rows of XᵀX at a time), so memory stays bounded
    for large catalogs; only the kept neighbours are stored, as a sparse matrix.
    """

    Config = ItemKNNConfig

    def _fit(self, train: Interactions) -> None:
        X = train.matrix.tocsc().astype(np.float32)
        n = X.shape[1]
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
        Xn = (X @ sp.diags(inv)).tocsc()
        XnT = Xn.T.tocsr()
        k = min(self.config.neighbors, max(1, n - 1))
        block = self.config.block_items or max(1, min(n, (32 * 2**20) // max(1, n)))
        rows, cols, vals = [], [], []
        for start in range(0, n, block):
            stop = min(n, start + block)
            sim = (XnT[start:stop] @ Xn).toarray()
            if self.config.shrink > 0:
                co = (X.T[start:stop] > 0).astype(np.float32) @ (X > 0).astype(np.float32)
                co = co.toarray()
                sim *= co / (co + self.config.shrink)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            v = np.take_along_axis(sim, part, axis=1)
            keep = v > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(part.ravel()[keep.ravel()])
            vals.append(v.ravel()[keep.ravel()])
        # S[i, j]: similarity of neighbour j to item i, so that scores = X_u @ S.
        self.similarity_ = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                         shape=(n, n), dtype=np.float32)
        self._X = train.matrix

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self._X[users] @ self.similarity_).toarray(), dtype=np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar items of one item (by training co-occurrence), best first."""
        row = self.similarity_[item]
        order = np.argsort(-row.data, kind="stable")[:k]
        return row.indices[order], row.data[order]

    def _state(self) -> dict[str, np.ndarray]:
        return {**csr_state("S", self.similarity_), **csr_state("X", self._X)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.similarity_ = csr_from_state("S", state)
        self._X = csr_from_state("X", state)
