"""Learned fusion over modalities and contrastive alignment (torch).

Every modality ``m`` is first projected to the shared width: ``h_m = W_m x_m``. Then

* ``concat``:    ``z = W [w_1 x_1; …; w_M x_M]`` (fixed concatenation, one projection);
* ``gated``:     ``z = Σ_m a_m (g_m ⊙ h_m) / Σ_m a_m`` with element-wise gates ``g_m = σ(G_m x_m)``;
* ``attention``: ``z = Σ_m α_m h_m`` with ``α = softmax_m(q · tanh(K h_m) / √d)`` learned per item;

where ``a_m`` is 1 if the item has modality ``m``. For ``gated`` and ``attention`` a missing modality takes
no part in the mix (its weight is exactly zero), so an image-less item is described by its text alone
rather than by its text averaged with a zero vector. :meth:`ModalityFusion.modality_weights` reports the
mix per item, which is what "which modality mattered" explanations read.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mosaicrec.fusion.base import FusionConfig


class ModalityFusion(nn.Module):
    """Per-item fusion of modality features ``{name: (b, d_m)}`` with masks ``{name: (b,) bool}``."""

    def __init__(self, dims: dict[str, int], out_dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.names = list(dims)
        self.kind = config.kind
        self.out_dim = out_dim
        self.weights = {m: math.sqrt(config.weights.get(m, 1.0)) for m in self.names}
        if self.kind == "concat":
            self.proj = nn.Linear(sum(dims.values()), out_dim)
        else:
            self.proj_m = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in dims.items()})
        if self.kind == "gated":
            self.gate_m = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in dims.items()})
        if self.kind == "attention":
            self.key = nn.Linear(out_dim, out_dim)
            self.query = nn.Parameter(torch.randn(out_dim) / math.sqrt(out_dim))

    @torch.no_grad()
    def zero_output(self) -> None:
        """Make the fused vector start at zero (its gradients do not: the inputs are not zero), so a model
        started from collaborative vectors scores exactly as they do before training adds content."""
        for layer in [self.proj] if self.kind == "concat" else list(self.proj_m.values()):
            layer.weight.zero_()
            layer.bias.zero_()

    def project(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality in the shared width (what cross-modal alignment compares)."""
        if self.kind == "concat":  # one joint projection: slice it per modality
            out, start = {}, 0
            for m in self.names:
                d = feats[m].shape[1]
                out[m] = feats[m] @ self.proj.weight[:, start:start + d].T
                start += d
            return out
        return {m: self.proj_m[m](feats[m]) for m in self.names}

    def modality_weights(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        """(b, M) share of each modality in each item's fused vector (rows sum to 1; 0 where missing)."""
        present = torch.stack([masks[m] for m in self.names], dim=1).float()
        if self.kind == "attention":
            h = self.project(feats)
            logits = torch.stack([torch.tanh(self.key(h[m])) @ self.query for m in self.names], dim=1)
            logits = logits / math.sqrt(self.out_dim)
            return torch.softmax(logits.masked_fill(present == 0, -1e9), dim=1) * (present.sum(1, keepdim=True) > 0)
        return present / present.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.kind == "concat":
            x = torch.cat([feats[m] * masks[m][:, None] * self.weights[m] for m in self.names], dim=1)
            return self.proj(x)
        h = self.project(feats)
        if self.kind == "gated":
            h = {m: torch.sigmoid(self.gate_m[m](feats[m])) * h[m] for m in self.names}
        w = self.modality_weights(feats, masks)
        return sum(w[:, k:k + 1] * h[m] for k, m in enumerate(self.names))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``a`` should match row ``i`` of ``b`` against every other row."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def alignment_loss(fusion: ModalityFusion, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                   temperature: float = 0.2, collaborative: torch.Tensor | None = None,
                   fused: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-modal InfoNCE over every pair of modalities (items having both), plus content ↔
    collaborative InfoNCE between the fused vectors and ``collaborative`` item embeddings when given."""
    h = fusion.project(feats)
    losses = []
    for i, m in enumerate(fusion.names):
        for n in fusion.names[i + 1:]:
            both = masks[m] & masks[n]
            if int(both.sum()) >= 2:
                losses.append(info_nce(h[m][both], h[n][both], temperature))
    if collaborative is not None:
        z = fused if fused is not None else fusion(feats, masks)
        losses.append(info_nce(z, collaborative, temperature))
    return torch.stack(losses).mean() if losses else torch.zeros(())


def pretrain_alignment(fusion: ModalityFusion, feats: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                       epochs: int, batch_size: int = 512, lr: float = 1e-3, temperature: float = 0.2,
                       seed: int = 0) -> list[float]:
    """Self-supervised pre-training of the projections with cross-modal InfoNCE; returns the mean loss per
    epoch (the loss falls as the modalities come to share one space)."""
    if len(fusion.names) < 2 or epochs == 0:
        return []
    g = torch.Generator().manual_seed(seed)
    tf = {m: torch.from_numpy(v) for m, v in feats.items()}
    tm = {m: torch.from_numpy(v) for m, v in masks.items()}
    n = len(next(iter(tf.values())))
    opt = torch.optim.Adam(fusion.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        perm, total, steps = torch.randperm(n, generator=g), 0.0, 0
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            loss = alignment_loss(fusion, {m: v[idx] for m, v in tf.items()}, {m: v[idx] for m, v in tm.items()},
                                  temperature)
            if not loss.requires_grad:
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        history.append(total / max(steps, 1))
    return history
