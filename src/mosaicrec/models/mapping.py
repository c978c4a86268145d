"""Content → collaborative mapping: items with events get ALS factors; items without any get factors
predicted from their content by a ridge map fitted on the items that have both.

score(u, j) = u · v_j, with v_j = ALS factor (trained items) or f_j W (new items), where f_j is the item's
fused, centred content and W = (FᵀD F + λI)⁻¹ FᵀD V over the trained items, D weighting each item by
log(1 + its event count) (a factor learned from two events is mostly noise). This is the "map content to
collaborative factors" route of the cold-start literature (e.g. Gantner et al. 2010's attribute-to-factor
maps; DropoutNet and CLCRec learn the same map with a network): closed form, seconds, and the warm lists
are ALS's own. New items' vectors are scaled to the size of the least seen trained items' (a new item is
one the model knows little about), which keeps them from crowding the rarely seen ones out of warm lists.
``warm_content`` mixes the mapped vector into trained items too (shrinking the factors of
rarely seen items toward what their content says). ``weigh_by_events = false`` and ``rescale = false`` make it
the plain ridge map (every trained item weighted alike, the output as it is): the baseline the new-item
models are measured against.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.fusion import FusionConfig, concat_features, select_modalities
from mosaicrec.models.registry import register
from mosaicrec.models.mf import ALS, ALSConfig


class PlacementConfig(ALSConfig):
    """What every content → factor model shares: the ALS it places new items beside, the content it reads,
    and how the predicted vectors are weighted in the fit and placed."""

    warm_content: float = Field(0.0, ge=0.0, description="shrinkage of trained items toward their mapped "
                                "vector: v = (n·v_als + s·v_map)/(n + s) with n the item's events, s this")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="modalities and weights (concat)")
    weigh_by_events: bool = Field(True, description="weigh each trained item in the map's fit by log(1 + its "
                                  "events); false: every item alike")
    rescale: bool = Field(True, description="scale new items' vectors to the least seen trained items' size; "
                          "false: the map's output as it is")


class ContentMapConfig(PlacementConfig):
    map_reg: float = Field(1.0, gt=0.0, description="ridge λ of the content → factor map")


@register("content-map")
class ContentMap(ALS):
    """ALS whose item factors for items without events come from their content (see the module)."""

    Config = ContentMapConfig
    needs_content = True
    #: skip the map where no item needs it (the networks; the ridge map is cheap and keeps W for saving)
    lazy_map = False

    def _fit(self, train: Interactions) -> None:
        super()._fit(train)
        cfg = self.config
        mods = select_modalities(self.content_, cfg.fusion.modalities, self.name)
        F = concat_features(self.content_, mods, cfg.fusion.weights, cfg.fusion.center)
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        has_content = np.linalg.norm(F, axis=1) > 0
        fit = (counts > 0) & has_content
        if self.lazy_map and cfg.warm_content == 0 and not ((counts == 0) & has_content).any():
            return  # no item to place (a warm fit): the map would change nothing
        mapped = self._map(F, fit, counts, train)
        self.V_ = place(self.V_, mapped, counts, has_content, rescale=cfg.rescale, warm_content=cfg.warm_content)

    def _map(self, F: np.ndarray, fit: np.ndarray, counts: np.ndarray, train: Interactions) -> np.ndarray:
        """Every item's predicted factor from its content row (``fit``: the trained items with content,
        the ones the map learns from)."""
        cfg = self.config
        F = F.astype(np.float64)
        w = np.log1p(counts[fit])[:, None] if cfg.weigh_by_events else np.ones((int(fit.sum()), 1))
        Ff, Vf = F[fit], self.V_[fit].astype(np.float64)
        W = np.linalg.solve(Ff.T @ (Ff * w) + cfg.map_reg * np.eye(F.shape[1]), (Ff * w).T @ Vf)
        self.W_ = W.astype(np.float32)
        return (F @ W).astype(np.float32)

    _state_keys = ("U", "V", "W")


def place(V: np.ndarray, mapped: np.ndarray, counts: np.ndarray, has_content: np.ndarray, *,
          rescale: bool = True, warm_content: float = 0.0) -> np.ndarray:
    """Item factors with the items that have no events (and have content) taken from ``mapped``.

    A map fitted on trained items predicts a typical item's factor, weighted toward the items seen most,
    and would rank every item without events above the rarely seen ones. With ``rescale`` the mapped
    vectors are scaled (one factor for all) to the norm of the least seen quarter of trained items, so a
    new item competes as one the model knows little about; the order among new items is unchanged.
    ``warm_content`` > 0 shrinks trained items toward their mapped vector by their event count."""
    mapped = np.asarray(mapped, np.float32).copy()
    fit = (counts > 0) & has_content
    if rescale:
        rare = fit & (counts <= np.quantile(counts[fit], 0.25)) if fit.any() else fit
        target = float(np.linalg.norm(V[rare], axis=1).mean()) if rare.any() else 1.0
        scale = target / max(float(np.linalg.norm(mapped[has_content], axis=1).mean()), 1e-12)
        mapped *= np.float32(scale)
    out = V.copy()
    cold = (counts == 0) & has_content
    out[cold] = mapped[cold]
    if warm_content > 0:
        n = counts[fit, None].astype(np.float32)
        out[fit] = (n * V[fit] + np.float32(warm_content) * mapped[fit]) / (n + np.float32(warm_content))
    return out
