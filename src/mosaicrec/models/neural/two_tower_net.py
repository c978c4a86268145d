"""The two-tower network in torch (see :mod:`.two_tower`); imported only when the model trains."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mosaicrec.models.neural.base import _normalise as normalise
from mosaicrec.models.neural.nets import Net, copy_start, init
from mosaicrec.models.neural.objectives import l2


class TwoTowerNet(Net):
    """Item tower over content (plus an id part for items with events), user tower over id, history and
    profile (see :class:`~mosaicrec.models.neural.two_tower.TwoTower`)."""

    def __init__(self, feats, masks, warm, cfg, train, profiles):
        super().__init__(feats, masks, warm, cfg.dim, cfg, train.n_users)
        d = cfg.dim
        self.cfg, self.X = cfg, train.binary
        self.tower = nn.Sequential(nn.ReLU(), nn.Linear(d, d))
        # popularity as seen from content: new items get the bias their content predicts
        self.bias_from_content = nn.Linear(d, 1)
        self.user = init(nn.Embedding(train.n_users, d), 0.01)
        self.w_hist = nn.Linear(d, d, bias=False)
        self.profiles = None if profiles is None else torch.from_numpy(normalise(profiles))
        self.w_prof = None if profiles is None else nn.Linear(profiles.shape[1], d, bias=False)
        self.hist = None
        self.item = nn.Embedding(train.n_items, d) if cfg.item_ids else None
        self.item_bias = nn.Embedding(train.n_items, 1) if cfg.item_ids else None
        if cfg.item_ids:
            nn.init.zeros_(self.item.weight)
            nn.init.zeros_(self.item_bias.weight)
        self.cf_width = d if cfg.item_ids else None
        self._export_hist = None

    def export_history(self):
        """The history sample users are exported with (seeded, so every export and the start
        agree)."""
        if self._export_hist is None:
            self._export_hist = sample_history(self.X, max(self.cfg.history, 200),
                                               np.random.default_rng(self.cfg.seed))
        return self._export_hist

    def start_from(self, U, V, b):
        """BPR's vectors as the id parts and the item tower's output at zero, so trained users and
        items score as BPR. The user tower starts as the ridge map from a user's mean history item
        vector (and profile) to their BPR vector, and each user id keeps the rest: trained users
        still score as BPR, and the start alone places a new user (early stopping may keep it)."""
        for layer in (self.tower[-1], self.bias_from_content):
            layer.weight.zero_()
            layer.bias.zero_()
        V = V * self.warm[:, None]  # as exported: items without events have no id vector
        hist, hmask = self.export_history()
        feats = [history_mean(V[hist], hmask)]
        if self.w_prof is not None:
            feats.append(self.profiles)
        F = torch.cat(feats, dim=1).double()
        G = F.T @ F
        # a ridge weight on the scale of the features (BPR's vectors can be small)
        ridge = 1e-2 * torch.trace(G) / G.shape[0] + 1e-8
        maps = torch.linalg.solve(G + ridge * torch.eye(G.shape[0], dtype=G.dtype), F.T @ U.double())
        self.w_hist.weight.copy_(maps[:self.cfg.dim].T)
        if self.w_prof is not None:
            self.w_prof.weight.copy_(maps[self.cfg.dim:].T)
        return copy_start([(self.user.weight, U - (F @ maps).float()), (self.item.weight, V),
                            (self.item_bias.weight, b[:, None])])

    def new_epoch(self, rng):
        self.hist, self.hist_mask = sample_history(self.X, self.cfg.history, rng)

    def items(self, i):
        c = self.content(i)
        v, b = self.tower(c), self.bias_from_content(c)[:, 0]
        if self.item is not None:
            w = self.warm[i]
            v, b = v + self.item(i) * w[:, None], b + self.item_bias(i)[:, 0] * w
        return v, b

    def users(self, u, vec_of, hist, hmask, target=None, keep_id=None):
        h = vec_of(hist)  # (b, L, d)
        if target is not None:  # a user's own target never explains itself
            hmask = hmask & (hist != target[:, None])
        x = self.w_hist(history_mean(h, hmask))
        idv = self.user(u) if keep_id is None else self.user(u) * keep_id[:, None]
        x = x + idv
        if self.w_prof is not None:
            x = x + self.w_prof(self.profiles[u])
        return x

    def batch(self, u, i, j):
        hist, hmask = self.hist[u], self.hist_mask[u]
        need, inv = torch.unique(torch.cat([hist.flatten(), i, j]), return_inverse=True)
        V, B = self.items(need)
        nh = hist.numel()
        keep = (torch.rand(len(u)) >= self.cfg.id_dropout).float()
        su = self.users(u, lambda h: V[inv[:nh].view(h.shape)], hist, hmask, i, keep)
        ii, jj = inv[nh:nh + len(i)], inv[nh + len(i):]
        vi, vj = V[ii], V[jj]
        norms = l2(su, vi, vj)
        return (su * vi).sum(1) + B[ii], (su * vj).sum(1) + B[jj], norms, torch.zeros(())

    def export(self):
        V = self.all_items(lambda i: self.items(i)[0])
        b = self.all_items(lambda i: self.items(i)[1])
        hist, hmask = self.export_history()
        U = torch.cat([self.users(u, lambda h: V[h], hist[u], hmask[u])
                       for u in torch.arange(self.n_users).split(4096)])
        out = {"U": U.numpy(), "V": V.numpy(), "b": b.numpy(),
               "W_hist": self.w_hist.weight.T.numpy()}
        if self.w_prof is not None:
            out["W_prof"] = self.w_prof.weight.T.numpy()
        return out


def history_mean(vectors, mask):
    """Mean of each row's history vectors (``b × L × d``) over its unmasked slots (0 for an empty row)."""
    w = mask.float()
    return (vectors * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1.0)


def sample_history(X: sp.csr_matrix, length: int, rng: np.random.Generator):
    """Up to ``length`` random training items per user as a padded (n_users, length) index tensor + mask."""
    n = X.shape[0]
    idx = np.zeros((n, length), np.int64)
    mask = np.zeros((n, length), bool)
    for u in range(n):
        row = X.indices[X.indptr[u]:X.indptr[u + 1]]
        if len(row) > length:
            row = rng.choice(row, length, replace=False)
        idx[u, :len(row)] = row
        mask[u, :len(row)] = True
    return torch.from_numpy(idx), torch.from_numpy(mask)
