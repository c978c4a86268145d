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
from mosaicrec.models.base import ModelConfig, register
from mosaicrec.models.itemknn import ItemKNN


class ContentKNNConfig(ModelConfig):
    neighbors: int = Field(50, ge=1, description="most similar items kept per item")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="modalities and weights (concat)")
    block_size: int = Field(2048, ge=1, description="rows of the similarity computed at a time (memory)")


def knn_graph(x: np.ndarray, k: int, block_size: int = 2048, valid: np.ndarray | None = None) -> sp.csr_matrix:
    """Sparse top-``k`` dot-product neighbours of every row (self excluded; rows of ``x`` should be
    normalised). Computed in row blocks so memory is ``block_size × n``, never ``n × n``. Rows with
    ``valid`` False neither get nor serve as neighbours."""
    n = x.shape[0]
    k = min(k, n - 1)
    valid = np.ones(n, bool) if valid is None else valid
    rows, cols, vals = [], [], []
    for s in range(0, n, block_size):
        sims = x[s:s + block_size] @ x.T
        sims[:, ~valid] = -np.inf
        sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.empty((len(sims), 0), int)
        v = np.take_along_axis(sims, top, axis=1)
        keep = np.isfinite(v) & (v > 0) & valid[s:s + sims.shape[0], None]
        r = np.broadcast_to(np.arange(s, s + sims.shape[0])[:, None], top.shape)
        rows.append(r[keep]), cols.append(top[keep]), vals.append(v[keep])
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
