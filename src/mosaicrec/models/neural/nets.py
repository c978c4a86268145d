"""The torch base class of the BPR-trained content networks (hybrid, VBPR, graph, two-tower): content
fused per item, content ↔ collaborative alignment, the batch's BPR inputs and the export to numpy. Imported
only when such a model trains (see :mod:`.base`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mosaicrec.fusion.learned import ModalityFusion
from mosaicrec.models.neural.objectives import info_nce, l2


class Net(nn.Module):
    def __init__(self, feats, masks, warm, dim, cfg, n_users):
        super().__init__()
        self.n_users = n_users
        self.feats = {m: torch.from_numpy(v) for m, v in feats.items()}
        self.masks = {m: torch.from_numpy(v) for m, v in masks.items()}
        self.warm = torch.from_numpy(warm.astype(np.float32))
        self.fusion = ModalityFusion({m: v.shape[1] for m, v in feats.items()}, dim, cfg.fusion)
        self.temperature = cfg.temperature
        self.aligning = cfg.align_weight > 0
        self.n_items = len(warm)

    def content(self, idx):
        return self.fusion({m: v[idx] for m, v in self.feats.items()},
                           {m: v[idx] for m, v in self.masks.items()})

    #: width of the collaborative id vectors a BPR start fills (None: the net has none)
    cf_width: int | None = None

    def new_epoch(self, rng) -> None:
        pass

    def start_from(self, U, V, b) -> list:
        """Set the id vectors from BPR's users ``U``, items ``V`` and item biases ``b`` (no_grad);
        returns the parameters set (they train at a lower rate)."""
        return []

    def align(self, content, collaborative, idx):
        """content ↔ collaborative InfoNCE over the warm items of a batch."""
        if not self.aligning:  # an all-pairs loss: half a batch's time, for nothing when off
            return torch.zeros(())
        keep = self.warm[idx] > 0
        if int(keep.sum()) < 2:
            return torch.zeros(())
        return info_nce(content[keep], collaborative[keep].detach(), self.temperature)

    def batch(self, u, i, j):
        """BPR inputs of a batch: positive and negative scores, the L2 term, the alignment term.
        The default fits factor nets with ``users(u)``, ``items(i) -> (vectors, biases, content)``
        and ``collaborative(i)``; graph and two-tower nets override it."""
        su = self.users(u)
        # each distinct item's content is fused once per batch: a batch repeats popular items many
        # times, and with large batches the distinct items are a fraction of the 2·batch drawn
        need, inv = torch.unique(torch.cat([i, j]), return_inverse=True)
        v, b, c = self.items(need)
        ii, jj = inv[:len(i)], inv[len(i):]
        vi, vj = v[ii], v[jj]
        norms = l2(su, vi, vj)
        return ((su * vi).sum(1) + b[ii], (su * vj).sum(1) + b[jj], norms,
                self.align(c[ii], self.collaborative(i), i))

    def export(self):
        parts = [self.items(idx) for idx in torch.arange(self.n_items).split(4096)]
        return {"U": self.users(torch.arange(self.n_users)).numpy(),
                "V": torch.cat([p[0] for p in parts]).numpy(), "b": torch.cat([p[1] for p in parts]).numpy()}

    def all_items(self, fn, batch: int = 4096):
        return torch.cat([fn(torch.arange(s, min(s + batch, self.n_items)))
                          for s in range(0, self.n_items, batch)])


def copy_start(pairs, fusion=None) -> list:
    """A BPR start: copy each ``(parameter, value)`` pair, zero the fusion's output (so the start scores as
    the copied vectors do), and return the parameters (they train at ``init_lr_scale`` of the rate)."""
    for param, value in pairs:
        param.copy_(value)
    if fusion is not None:
        fusion.zero_output()
    return [param for param, _ in pairs]


def init(emb, std: float = 0.1):
    nn.init.normal_(emb.weight, std=std)
    return emb
