"""Content-based KNN: items are similar when their (fused) content embeddings are, whatever their history.

score(u, j) = Σ_i x_ui · sim(i, j) over the ``neighbors`` items most similar to j by content. An item with no
training events still has neighbours, so new items are recommended from the first moment; with TF-IDF
content (encoder ``tfidf``) this is the classical content baseline.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.fusion import FusionConfig, concat_features, select_modalities
from mosaicrec.models.base import ModelConfig
from mosaicrec.models.registry import register
from mosaicrec.models.itemknn import ItemKNN


class ContentKNNConfig(ModelConfig):
    neighbors: int = Field(50, ge=1, description="most similar items kept per item")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="modalities and weights (concat)")
    block_size: int = Field(2048, ge=1, description="rows of the similarity computed at a time (memory)")


def knn_graph(x: np.ndarray, k: int, block_size: int = 2048, valid: np.ndarray | None = None) -> sp.csr_matrix:
    """Sparse top-``k`` dot-product neighbours of every row (self excluded; rows of ``x`` should be
    normalised), by exact inner-product search in faiss (``IndexFlatIP``: multithreaded BLAS in blocks of
    ``block_size`` queries, so memory stays ``block_size × n``). Rows with ``valid`` False neither get
    nor serve as neighbours; only positive similarities are kept."""
    import faiss

    n = x.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    rows_valid = np.flatnonzero(valid)
    k = min(k, len(rows_valid) - 1)
    if k <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    xv = np.ascontiguousarray(x[rows_valid], dtype=np.float32)
    index = faiss.IndexFlatIP(xv.shape[1])
    index.add(xv)
    rows, cols, vals = [], [], []
    for s in range(0, len(xv), block_size):
        sims, idx = index.search(xv[s:s + block_size], k + 1)
        own = np.arange(s, s + len(sims))[:, None]
        # drop each row's own entry (or, with exact duplicates ranked first, the surplus last one)
        keep_self = idx != own
        surplus = keep_self.all(axis=1)
        keep_self[surplus, -1] = False
        keep = keep_self & (idx >= 0) & (sims > 0)
        r = np.broadcast_to(own, idx.shape)
        rows.append(rows_valid[r[keep]]), cols.append(rows_valid[idx[keep]]), vals.append(sims[keep])
    return sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))


@register("content-knn")
class ContentKNN(ItemKNN):
    """Item-item cosine over weighted, concatenated modality embeddings (see :func:`concat_features`).
    Scoring, fold-in and saving are ItemKNN's: only where the neighbours come from differs."""

    Config = ContentKNNConfig
    needs_content = True

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        mods = select_modalities(self.content_, cfg.fusion.modalities, self.name)
        x = concat_features(self.content_, mods, cfg.fusion.weights, cfg.fusion.center)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
        # S[i, j]: similarity of neighbour i to item j (column j lists j's neighbours), so scores = X_u S.
        self.similarity_ = knn_graph(x, cfg.neighbors, cfg.block_size, valid=norms[:, 0] > 0).T.tocsr()
        self._X = sp.csr_matrix(train.matrix, dtype=np.float32)

    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to ``item`` by content, best first."""
        col = self.similarity_[:, item].tocoo()
        order = np.argsort(-col.data, kind="stable")[:k]
        return col.row[order], col.data[order]
