"""LightFM-style hybrid: item = id embedding + fused content; user = id (+ profile)."""

from __future__ import annotations

import numpy as np

from mosaicrec.models.registry import register
from mosaicrec.models.query import Query
from mosaicrec.models.neural.base import _copy_start, _init, _net_base, _NeuralModel, _normalise, _torch
from mosaicrec.models.mf import fold_in


@register("hybrid")
class Hybrid(_NeuralModel):
    """LightFM-style hybrid: item = id embedding (items with training events) + fused content projection;
    user = id embedding (+ a projection of the user's profile embedding when profiles are given)."""

    uses_profiles = True

    def _build(self, train, feats, masks, warm):
        torch = _torch()
        from torch import nn
        d, profiles = self.config.dim, self.user_profiles_

        class HybridNet(_net_base()):
            def __init__(self, cfg):
                super().__init__(feats, masks, warm, d, cfg, train.n_users)
                self.user = _init(nn.Embedding(train.n_users, d))
                self.item = _init(nn.Embedding(train.n_items, d))
                self.bias = nn.Embedding(train.n_items, 1)
                nn.init.zeros_(self.bias.weight)
                self.profiles = None if profiles is None else torch.from_numpy(_normalise(profiles))
                self.profile = None if profiles is None else nn.Linear(profiles.shape[1], d, bias=False)

            cf_width = d

            def start_from(self, U, V, b):
                return _copy_start([(self.user.weight, U), (self.item.weight, V), (self.bias.weight, b[:, None])],
                                   self.fusion)

            def users(self, u):
                x = self.user(u)
                return x if self.profile is None else x + self.profile(self.profiles[u])

            def items(self, i):
                c = self.content(i)
                return self.item(i) * self.warm[i, None] + c, self.bias(i)[:, 0] * self.warm[i], c

            def collaborative(self, i):
                return self.item(i)

            def export(self):
                out = super().export()
                if self.profile is not None:
                    out["W_prof"] = self.profile.weight.T.numpy()
                return out

        return HybridNet(self.config)

    def query_factors(self, query: Query) -> np.ndarray:
        """New users are folded in around the profile's part of the user vector when the model learned
        one (so a new user's profile counts as a trained user's does, and their events correct it)."""
        W = getattr(self, "W_prof_", None)
        if not query.new_users or W is None or query.profiles is None:
            return super().query_factors(query)
        return fold_in(self.V_, query.history, gram=self._gram(), offset=_normalise(query.profiles) @ W,
                       **self._fold_options())
