"""VBPR (He & McAuley 2016)."""

from __future__ import annotations

from mosaicrec.models.base import register
from mosaicrec.models.neural.base import _copy_start, _init, _net_base, _NeuralModel, _torch


@register("vbpr")
class VBPR(_NeuralModel):
    """VBPR: half the width is collaborative (γ), half visual/content (θ_u · E f_i), plus item bias and a
    content bias β'·f_i. The content is any fused set of modalities, not only images."""

    def _build(self, train, feats, masks, warm):
        torch = _torch()
        from torch import nn
        half = self.config.dim // 2

        class VBPRNet(_net_base()):
            def __init__(self, cfg):
                super().__init__(feats, masks, warm, half, cfg, train.n_users)
                self.gamma_u = _init(nn.Embedding(train.n_users, half))
                self.theta_u = _init(nn.Embedding(train.n_users, half))
                self.gamma_i = _init(nn.Embedding(train.n_items, half))
                self.bias = nn.Embedding(train.n_items, 1)
                nn.init.zeros_(self.bias.weight)
                self.beta = nn.Linear(half, 1, bias=False)

            cf_width = half

            def start_from(self, U, V, b):
                return _copy_start([(self.gamma_u.weight, U), (self.gamma_i.weight, V),
                                    (self.bias.weight, b[:, None])], self.fusion)

            def users(self, u):
                return torch.cat([self.gamma_u(u), self.theta_u(u)], dim=1)

            def items(self, i):
                c = self.content(i)
                v = torch.cat([self.gamma_i(i) * self.warm[i, None], c], dim=1)
                return v, self.bias(i)[:, 0] * self.warm[i] + self.beta(c)[:, 0], c

            def collaborative(self, i):
                return self.gamma_i(i)

        return VBPRNet(self.config)
