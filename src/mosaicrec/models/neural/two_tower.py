"""Two-tower model: an item tower over content only, a user tower over id, history and profile."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from mosaicrec.data.schema import binary_rows
from mosaicrec.models.registry import register
from mosaicrec.models.query import Query
from mosaicrec.models.neural.base import NeuralConfig, _NeuralModel, _normalise


class TwoTowerConfig(NeuralConfig):
    history: int = Field(20, ge=1, description="history items sampled per user for the user tower")
    id_dropout: float = Field(0.0, ge=0, le=1, description="share of examples trained without the user id, "
                              "to make the history/profile path work alone for new users. Measured, it did "
                              "not: on ml100k-multimodal (2 seeds) 0.1 was below 0 on warm users, new items "
                              "and new users alike (new users 0.279 against 0.288), and at 1M events 0.5 "
                              "cost 16% Recall@10 on warm users; the history path learns beside the id")
    item_ids: bool = Field(True, description="items with training events also get an id vector and bias "
                           "added to the tower's (as YouTube's two-tower takes item ids); new items are the "
                           "content tower alone. Off: every item is its content only")


@register("two-tower")
class TwoTower(_NeuralModel):
    """Item tower: MLP over fused content, no item id, so every item with content has a vector. User
    tower: id embedding + W_h · mean(history item vectors) + W_p · profile. The target item is left out of
    its own history mean, so the history/profile path learns to predict items it is not made of, and it
    alone serves users the model never saw (``id_dropout`` can also drop the user id for a share of
    training examples)."""

    uses_profiles = True

    Config = TwoTowerConfig

    def _build(self, train, feats, masks, warm):
        from mosaicrec.models.neural.two_tower_net import TwoTowerNet

        return TwoTowerNet(feats, masks, warm, self.config, train, self.user_profiles_)

    def query_factors(self, query: Query) -> np.ndarray:
        """New users go through the user tower: mean history item vector (and the profile) through the
        learned projections."""
        if not query.new_users:
            return super().query_factors(query)
        history, profiles = query.history, query.profiles
        counts = np.maximum(np.diff(history.indptr), 1)[:, None]
        u = np.asarray(binary_rows(history) @ self.V_) / counts @ self.W_hist_
        if getattr(self, "W_prof_", None) is not None and profiles is not None:
            u = u + _normalise(profiles) @ self.W_prof_
        return u.astype(np.float32)
