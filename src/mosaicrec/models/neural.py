"""Multimodal models trained with a BPR loss in torch, scored in numpy.

* ``hybrid`` — LightFM-style: item = id embedding + fused content; user = id embedding (+ profile);
* ``vbpr`` — VBPR (He & McAuley 2016): [γ_u; θ_u]·[γ_i; E f_i] + b_i + β'·f_i;
* ``graph`` — FREEDOM-style (Zhou & Shen 2023): LightGCN over the user–item graph, plus item id embeddings
  propagated over a frozen item–item kNN graph built from content, plus projected content;
* ``two-tower`` — items from content only (any item with content scores), users from their id, the mean of
  their history's item vectors and an optional profile embedding.

Every model fuses modalities with :class:`~mosaicrec.fusion.learned.ModalityFusion` (``fusion.kind``:
concat / gated / attention), can pre-train the fusion with cross-modal InfoNCE (``pretrain_epochs``) and add
content↔collaborative InfoNCE to the loss (``align_weight``). Items without training events never get an
id embedding (it is masked to zero), so they are scored from content alone — the cold-start path.

After training, user and item vectors (and item biases) are exported as numpy arrays: saving, loading and
scoring need no torch. New users are folded in from their events (:func:`~mosaicrec.models.mf.fold_in`);
the two-tower model uses its user tower instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.fusion import FusionConfig, modality_matrix, select_modalities
from mosaicrec.models.base import BaseRecommender, ModelConfig, register
from mosaicrec.models.content import knn_graph
from mosaicrec.models.mf import FactorScoring, fold_in
from mosaicrec.models.trainer import recall_at, train_epochs


class NeuralConfig(ModelConfig):
    dim: int = Field(64, ge=2, description="width of user and item vectors")
    epochs: int = Field(30, ge=1)
    lr: float = Field(5e-3, gt=0)
    reg: float = Field(1e-4, ge=0, description="L2 weight on the batch's user and item vectors")
    batch_size: int = Field(2048, ge=1)
    seed: int = 42
    threads: int = Field(0, ge=0, description="torch threads (0: measured: the first batches run with all "
                         "cores and with one, and the faster setting trains the rest)")
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    pretrain_epochs: int = Field(0, ge=0, description="cross-modal InfoNCE pre-training of the fusion")
    align_weight: float = Field(0.0, ge=0, description="weight of content↔collaborative InfoNCE in the loss")
    temperature: float = Field(0.2, gt=0)
    early_stopping: int = Field(0, ge=0, description="patience in epochs: hold out validation_share of each "
                                "user's training events, stop when their Recall@20 has not improved for this "
                                "many epochs and keep the best epoch (0: train all epochs on everything)")
    validation_share: float = Field(0.1, gt=0, lt=1, description="with early_stopping: events held out")


class GraphConfig(NeuralConfig):
    layers: int = Field(2, ge=0, description="LightGCN layers over the user–item graph")
    item_layers: int = Field(1, ge=0, description="propagation steps over the item–item content graph")
    knn: int = Field(10, ge=1, description="content neighbours per item in the item–item graph")


class TwoTowerConfig(NeuralConfig):
    history: int = Field(20, ge=1, description="history items sampled per user for the user tower")
    id_dropout: float = Field(0.5, ge=0, le=1, description="share of examples trained without the user id, "
                              "so the history/profile path works alone for new users")


def _torch():
    import torch  # torch loads only when a neural model trains

    return torch


class _NeuralModel(FactorScoring, BaseRecommender):
    """Shared BPR training loop and numpy scoring; subclasses build the network."""

    Config = NeuralConfig
    needs_content = True
    _state_keys: tuple[str, ...] = ("U", "V", "b")

    def _fit(self, train: Interactions) -> None:
        torch = _torch()
        from mosaicrec.fusion.learned import pretrain_alignment

        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        old_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads or old_threads)
        # On a small, busy machine torch's intra-op threads can be several times slower than one (they
        # spin against each other and the other processes); which wins depends on the batch and the
        # load, so threads=0 times a few real training batches each way and keeps the faster.
        trial = [] if cfg.threads or old_threads == 1 else [old_threads] * 4 + [1] * 4
        timings: dict[int, list[float]] = {}
        tb = 0.0
        try:
            fit_part, val = train, None
            if cfg.early_stopping:
                from mosaicrec.data.splits import random_holdout

                fit_part, val = random_holdout(train, cfg.validation_share, cfg.seed)
            mods = select_modalities(self.content_, cfg.fusion.modalities, self.name)
            feats = {m: modality_matrix(self.content_, m, cfg.fusion.center) for m in mods}
            masks = {m: self.content_.masks[m].copy() for m in mods}
            X = fit_part.binary
            warm = np.asarray(X.sum(axis=0)).ravel() > 0
            net = self._build(fit_part, feats, masks, warm)
            self.pretrain_history_ = pretrain_alignment(net.fusion, feats, masks, cfg.pretrain_epochs,
                                                        temperature=cfg.temperature, seed=cfg.seed)
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
            users, items = fit_part.users.astype(np.int64), fit_part.items.astype(np.int64)
            warm_items = np.flatnonzero(warm)  # negatives come from the catalog the model has seen
            self.history_: list[dict[str, Any]] = []

            def run_epoch(epoch: int) -> dict[str, Any]:
                nonlocal tb
                net.train()
                t0, total = time.perf_counter(), 0.0
                net.new_epoch(rng)
                perm = rng.permutation(len(users))
                for step, s in enumerate(range(0, len(perm), cfg.batch_size)):
                    if trial and epoch == 0 and step <= len(trial):
                        if step:
                            timings.setdefault(torch.get_num_threads(), []).append(time.perf_counter() - tb)
                        if step == len(trial):
                            torch.set_num_threads(min(timings, key=lambda n: np.median(timings[n])))
                            self.threads_ = torch.get_num_threads()
                        else:
                            torch.set_num_threads(trial[step])
                        tb = time.perf_counter()
                    b = perm[s:s + cfg.batch_size]
                    u = torch.from_numpy(users[b])
                    i = torch.from_numpy(items[b])
                    j = torch.from_numpy(warm_items[rng.integers(len(warm_items), size=len(b))])
                    pos, neg, norms, aux = net.batch(u, i, j)
                    loss = -torch.nn.functional.logsigmoid(pos - neg).mean() + cfg.reg * norms
                    if cfg.align_weight > 0:
                        loss = loss + cfg.align_weight * aux
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                return {"epoch": epoch, "loss": total / len(perm), "seconds": time.perf_counter() - t0}

            def validate() -> float:
                net.eval()
                with torch.no_grad():
                    state = net.export()
                return recall_at(state["U"], state["V"], state.get("b"), X, val.binary, seed=cfg.seed)

            result = train_epochs(cfg.epochs, run_epoch, self._epoch_done,
                                  validate=validate if val is not None else None, patience=cfg.early_stopping,
                                  checkpoint=lambda: {k: v.detach().clone() for k, v in net.state_dict().items()},
                                  restore=net.load_state_dict)
            self.best_epoch_ = result.best_epoch
            net.eval()
            with torch.no_grad():
                state = net.export()
            U, V = state["U"], state["V"]
            state["fold_target"] = np.array([np.mean(np.einsum("ij,ij->i", U[users], V[items]))])
            for k, v in state.items():
                setattr(self, k + "_", np.ascontiguousarray(v, dtype=np.float32))
            self._state_keys = tuple(state)
        finally:
            torch.set_num_threads(old_threads)

    def _fold_options(self) -> dict[str, float]:
        return {"target": float(self.fold_target_[0])}

    def item_vectors(self) -> np.ndarray:
        """The item vectors scores are dot products with (content-derived for items never trained on)."""
        return self.V_

    def _state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k + "_") for k in self._state_keys}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._state_keys = tuple(state)
        for k, v in state.items():
            setattr(self, k + "_", v)

    def _build(self, train: Interactions, feats: dict[str, np.ndarray], masks: dict[str, np.ndarray],
               warm: np.ndarray):
        raise NotImplementedError


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _net_base():
    """The torch base class of every network (built lazily so importing this module needs no torch)."""
    torch = _torch()
    from torch import nn

    from mosaicrec.fusion.learned import ModalityFusion, info_nce

    class Net(nn.Module):
        def __init__(self, feats, masks, warm, dim, cfg, n_users):
            super().__init__()
            self.n_users = n_users
            self.feats = {m: torch.from_numpy(v) for m, v in feats.items()}
            self.masks = {m: torch.from_numpy(v) for m, v in masks.items()}
            self.warm = torch.from_numpy(warm.astype(np.float32))
            self.fusion = ModalityFusion({m: v.shape[1] for m, v in feats.items()}, dim, cfg.fusion)
            self.temperature = cfg.temperature
            self.n_items = len(warm)

        def content(self, idx):
            return self.fusion({m: v[idx] for m, v in self.feats.items()},
                               {m: v[idx] for m, v in self.masks.items()})

        def new_epoch(self, rng) -> None:
            pass

        def align(self, content, collaborative, idx):
            """content ↔ collaborative InfoNCE over the warm items of a batch."""
            keep = self.warm[idx] > 0
            if int(keep.sum()) < 2:
                return torch.zeros(())
            return info_nce(content[keep], collaborative[keep].detach(), self.temperature)

        def batch(self, u, i, j):
            """BPR inputs of a batch: positive and negative scores, the L2 term, the alignment term.
            The default fits factor nets with ``users(u)``, ``items(i) -> (vectors, biases, content)``
            and ``collaborative(i)``; graph and two-tower nets override it."""
            su = self.users(u)
            (vi, bi, ci), (vj, bj, _) = self.items(i), self.items(j)
            norms = (su.square().sum(1) + vi.square().sum(1) + vj.square().sum(1)).mean()
            return (su * vi).sum(1) + bi, (su * vj).sum(1) + bj, norms, self.align(ci, self.collaborative(i), i)

        def export(self):
            parts = [self.items(idx) for idx in torch.arange(self.n_items).split(4096)]
            return {"U": self.users(torch.arange(self.n_users)).numpy(),
                    "V": torch.cat([p[0] for p in parts]).numpy(), "b": torch.cat([p[1] for p in parts]).numpy()}

        def all_items(self, fn, batch: int = 4096):
            return torch.cat([fn(torch.arange(s, min(s + batch, self.n_items)))
                              for s in range(0, self.n_items, batch)])

    return Net


def _init(emb, std: float = 0.1):
    _torch().nn.init.normal_(emb.weight, std=std)
    return emb


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

    def history_factors(self, history: sp.csr_matrix, profiles: np.ndarray | None = None,
                        context=None) -> np.ndarray:
        """Fold-in, around the profile's part of the user vector when the model learned one (so a new
        user's profile counts as a trained user's does, and their events correct it)."""
        W = getattr(self, "W_prof_", None)
        offset = None if W is None or profiles is None else _normalise(profiles) @ W
        return fold_in(self.V_, history, gram=self._gram(), offset=offset, **self._fold_options())


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

            def users(self, u):
                return torch.cat([self.gamma_u(u), self.theta_u(u)], dim=1)

            def items(self, i):
                c = self.content(i)
                v = torch.cat([self.gamma_i(i) * self.warm[i, None], c], dim=1)
                return v, self.bias(i)[:, 0] * self.warm[i] + self.beta(c)[:, 0], c

            def collaborative(self, i):
                return self.gamma_i(i)

        return VBPRNet(self.config)


def _sparse(m: sp.spmatrix):
    torch = _torch()
    m = m.tocoo()
    idx = torch.from_numpy(np.vstack([m.row, m.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(m.data.astype(np.float32)), m.shape,
                                   check_invariants=False).coalesce()


def _sym_normalise(a: sp.spmatrix) -> sp.csr_matrix:
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg, dtype=np.float64), where=deg > 0)
    d = sp.diags(inv)
    return (d @ a @ d).tocsr()


@register("graph")
class GraphModel(_NeuralModel):
    """FREEDOM-style multimodal graph model. The item–item graph is the mean of per-modality cosine kNN
    graphs, built once from content and kept frozen (as FREEDOM does), so propagation is two sparse
    products per step. An item without events is reached only through content edges: its vector is the
    propagated id embeddings of its content neighbours plus its projected content."""

    Config = GraphConfig

    def _build(self, train, feats, masks, warm):
        torch = _torch()
        from torch import nn
        cfg = self.config
        d, nu, ni = cfg.dim, train.n_users, train.n_items
        X = train.binary.astype(np.float32)
        A = sp.bmat([[None, X], [X.T, None]])
        A_hat = _sparse(_sym_normalise(A))
        S = sum(knn_graph(feats[m], cfg.knn, valid=masks[m]) for m in feats) / len(feats)
        S_hat = _sparse(_sym_normalise(S.maximum(S.T)))
        self.item_graph_edges_ = int(S.nnz)

        class GraphNet(_net_base()):
            def __init__(self):
                super().__init__(feats, masks, warm, d, cfg, train.n_users)
                self.emb = _init(nn.Embedding(nu + ni, d))
                self.node_mask = torch.cat([torch.ones(nu), self.warm])[:, None]
                self._cache = None

            def propagate(self):
                e = self.emb.weight * self.node_mask
                layers = [e]
                for _ in range(cfg.layers):
                    layers.append(torch.sparse.mm(A_hat, layers[-1]))
                out = torch.stack(layers).mean(0)
                h = e[nu:]
                for _ in range(cfg.item_layers):
                    h = torch.sparse.mm(S_hat, h)
                return out[:nu], out[nu:] + h

            def batch(self, u, i, j):
                U, V = self.propagate()
                su = U[u]
                ci, cj = self.content(i), self.content(j)
                vi, vj = V[i] + ci, V[j] + cj
                norms = (self.emb.weight[u].square().sum(1) + self.emb.weight[nu + i].square().sum(1)
                         + self.emb.weight[nu + j].square().sum(1)).mean()
                return (su * vi).sum(1), (su * vj).sum(1), norms, self.align(ci, V[i], i)

            def export(self):
                U, V = self.propagate()
                V = V + self.all_items(self.content)
                return {"U": U.numpy(), "V": V.numpy(), "b": np.zeros(ni, np.float32)}

        return GraphNet()


@register("two-tower")
class TwoTower(_NeuralModel):
    """Item tower: MLP over fused content, no item id, so every item with content has a vector. User
    tower: id embedding + W_h · mean(history item vectors) + W_p · profile. The user id is dropped for a
    share of training examples and the target item is left out of its own history mean, so the
    history/profile path alone serves users the model never saw."""

    uses_profiles = True

    Config = TwoTowerConfig

    def _build(self, train, feats, masks, warm):
        torch = _torch()
        from torch import nn
        cfg = self.config
        d, profiles = cfg.dim, self.user_profiles_
        X = train.binary

        class TwoTowerNet(_net_base()):
            def __init__(self):
                super().__init__(feats, masks, warm, d, cfg, train.n_users)
                self.tower = nn.Sequential(nn.ReLU(), nn.Linear(d, d))
                # popularity as seen from content: new items get the bias their content predicts
                self.bias_from_content = nn.Linear(d, 1)
                self.user = _init(nn.Embedding(train.n_users, d), 0.01)
                self.w_hist = nn.Linear(d, d, bias=False)
                self.profiles = None if profiles is None else torch.from_numpy(_normalise(profiles))
                self.w_prof = None if profiles is None else nn.Linear(profiles.shape[1], d, bias=False)
                self.hist = None

            def new_epoch(self, rng):
                self.hist, self.hist_mask = _sample_history(X, cfg.history, rng)

            def items(self, i):
                c = self.content(i)
                return self.tower(c), self.bias_from_content(c)[:, 0]

            def users(self, u, vec_of, hist, hmask, target=None, keep_id=None):
                h = vec_of(hist)  # (b, L, d)
                if target is not None:  # a user's own target never explains itself
                    hmask = hmask & (hist != target[:, None])
                w = hmask.float()
                mean = (h * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1.0)
                x = self.w_hist(mean)
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
                keep = (torch.rand(len(u)) >= cfg.id_dropout).float()
                su = self.users(u, lambda h: V[inv[:nh].view(h.shape)], hist, hmask, i, keep)
                ii, jj = inv[nh:nh + len(i)], inv[nh + len(i):]
                vi, vj = V[ii], V[jj]
                norms = (su.square().sum(1) + vi.square().sum(1) + vj.square().sum(1)).mean()
                return (su * vi).sum(1) + B[ii], (su * vj).sum(1) + B[jj], norms, torch.zeros(())

            def export(self):
                V = self.all_items(lambda i: self.items(i)[0])
                b = self.all_items(lambda i: self.items(i)[1])
                hist, hmask = _sample_history(X, max(cfg.history, 200), np.random.default_rng(cfg.seed))
                U = torch.cat([self.users(u, lambda h: V[h], hist[u], hmask[u])
                               for u in torch.arange(train.n_users).split(4096)])
                out = {"U": U.numpy(), "V": V.numpy(), "b": b.numpy(),
                       "W_hist": self.w_hist.weight.T.numpy()}
                if self.w_prof is not None:
                    out["W_prof"] = self.w_prof.weight.T.numpy()
                return out

        return TwoTowerNet()

    def history_factors(self, history: sp.csr_matrix, profiles: np.ndarray | None = None,
                        context=None) -> np.ndarray:
        """The user tower: mean history item vector (and the profile) through the learned projections."""
        history = sp.csr_matrix(history, dtype=np.float32)
        counts = np.maximum(np.diff(history.indptr), 1)[:, None]
        binary = sp.csr_matrix((np.ones_like(history.data), history.indices, history.indptr), history.shape)
        u = np.asarray(binary @ self.V_) / counts @ self.W_hist_
        if getattr(self, "W_prof_", None) is not None and profiles is not None:
            u = u + _normalise(profiles) @ self.W_prof_
        return u.astype(np.float32)


def _sample_history(X: sp.csr_matrix, length: int, rng: np.random.Generator):
    """Up to ``length`` random training items per user as a padded (n_users, length) index tensor + mask."""
    torch = _torch()
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
