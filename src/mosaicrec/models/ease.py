"""EASE^R (Steck, 2019): a closed-form item-item linear autoencoder with a zero diagonal."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.errors import MosaicError
from mosaicrec.fusion import FusionConfig, concat_features, select_modalities
from mosaicrec.models.prior import NewUserPrior, PriorConfig
from mosaicrec.models.query import Query
from mosaicrec.models.base import BaseRecommender, ModelConfig, csr_from_state, csr_state
from mosaicrec.models.registry import register


class EASEConfig(PriorConfig, ModelConfig):
    reg: float = Field(500.0, gt=0.0, description="L2 weight λ added to the Gram matrix diagonal")
    max_items: int = Field(40_000, ge=1, description="refuse catalogs whose dense n×n matrix is too big")


@register("ease")
class EASE(NewUserPrior, BaseRecommender):
    """B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹; scores = X_u B.

    The inverse uses a Cholesky factorisation (LAPACK potrf/potri), about twice as fast as a general
    inverse, since XᵀX + λI is symmetric positive definite.
    """

    Config = EASEConfig

    def _fit(self, train: Interactions) -> None:
        self._fit_prior(train)
        X = train.matrix
        n = X.shape[1]
        if n > self.config.max_items:
            raise MosaicError(f"{self.name}: {n} items need a dense {n}×{n} matrix "
                              f"({n * n * 8 / 2**30:.1f} GiB); raise max_items or use itemknn")
        # float32 LAPACK halves the time of the O(n³) step; XᵀX + λI is well conditioned for the usual
        # λ (hundreds), and the closed-form test checks the result against a float64 inverse.
        G = (X.T @ X).toarray().astype(np.float32)
        self._add_side(G)
        G[np.diag_indices(n)] += self.config.reg
        c, info = scipy.linalg.lapack.spotrf(G, lower=False, overwrite_a=True)
        if info != 0:
            raise MosaicError(f"ease: the Gram matrix is not positive definite (LAPACK info {info})")
        P, info = scipy.linalg.lapack.spotri(c, lower=False, overwrite_c=True)
        lower = np.tri(n, k=-1, dtype=bool)
        P[lower] = P.T[lower]  # potri fills the upper triangle only
        B = P / (-np.diag(P))
        B[np.diag_indices(n)] = 0.0
        self.B_ = B
        self._X = sp.csr_matrix(X, dtype=np.float32)

    def _add_side(self, G: np.ndarray) -> None:
        """Hook for side information added to the Gram matrix (plain EASE has none)."""

    def _scores(self, query: Query) -> np.ndarray:
        if query.new_users:
            return self._prior(query.history @ self.B_, query)
        return np.asarray(self._X[query.users] @ self.B_, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"B": self.B_, **csr_state("X", self._X), **self._prior_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.B_ = state["B"]
        self._X = csr_from_state("X", state)
        self._set_prior_state(state)


class ContentEASEConfig(EASEConfig):
    content_weight: float = Field(30.0, ge=0.0, description="α: weight of the content rows against the events")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="modalities and weights (concat)")


@register("content-ease")
class ContentEASE(EASE):
    """EASE with item content as extra rows of X (collective EASE, Jeunen et al. 2020): G = XᵀX + α·FFᵀ + λI,
    with F the fused, normalised item embeddings. Items that co-occur *or* look alike get weight in B, so
    an item without training events is still reached through its content; α = 0 is plain EASE."""

    Config = ContentEASEConfig
    needs_content = True

    def _add_side(self, G: np.ndarray) -> None:
        mods = select_modalities(self.content_, self.config.fusion.modalities, self.name)
        F = concat_features(self.content_, mods, self.config.fusion.weights, self.config.fusion.center)
        F /= np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
        G += np.float32(self.config.content_weight) * (F @ F.T)
