"""New-item models that learn the content → collaborative map with a network, beside ALS.

Each fits ALS on the events (warm lists are ALS's own, as with ``content-map``), then trains a generator
g: content row → item factor on the trained items, and places every item without events at g(its content)
(:func:`~mosaicrec.models.mapping.place`: scaled to the least seen trained items' size). They differ in
what the generator is taught, after three papers of the cold-start literature:

* ``dropoutnet`` (Volkovs, Yu & Poutanen 2017): the item tower reads [collaborative vector, content] with
  the collaborative part dropped at random (``pref_dropout``) and is trained to reproduce the teacher's
  scores u·v for every user, (g − v)ᵀ(UᵀU/n)(g − v); a new item is the input with that part dropped.
  The user tower is ALS's user factors as they are, so warm lists are untouched.
* ``clcrec`` (Wei et al. 2021): contrastive — InfoNCE between an item's generated and collaborative
  vectors (cosine / ``temperature``, the other items of the batch as negatives) plus InfoNCE of a user
  who liked it against the items of the batch (u·g), weighted ``item_weight`` : 1 − ``item_weight``; each
  item's terms count as many times as it has events (the paper draws events, so a popular item is a
  positive more often, and the vectors' sizes learn popularity).
* ``aldi`` (Huang et al. 2023): distillation of the warm model into the generator — on (user, liked item,
  random item) triples, BPR on the student's scores plus ``distill_weight`` × (rating alignment: the
  student's score gap matches the teacher's; ranking alignment: cross-entropy against the teacher's
  pairwise preference; identification alignment: each item's softmax similarity to the batch's items
  matches the teacher's), with the teacher's items weighted by how often they were seen.

All three share one generator (dropout on the input, one hidden layer, a linear head) and train with Adam.
The closed-form ridge map (``content-map``) is the baseline they are measured against
(docs/benchmarks/content.md).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from pydantic import Field

from mosaicrec.data.schema import Interactions
from mosaicrec.models.mapping import ContentMap, PlacementConfig
from mosaicrec.models.neural.base import _torch
from mosaicrec.models.registry import register


class ColdNetConfig(PlacementConfig):
    hidden: int = Field(128, ge=1, le=8192, description="width of the generator's hidden layer")
    epochs: int = Field(100, ge=1, le=5000, description="passes over the trained items")
    input_dim: int = Field(256, ge=0, le=8192, description="content projected on its top principal directions "
                           "among the trained items before the generator (0: as it is)")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Adam's rate")
    weight_decay: float = Field(1e-4, ge=0, le=100.0, description="L2 on the generator's weights")
    input_dropout: float = Field(0.2, ge=0, lt=1, description="dropout on the content input")
    batch_size: int = Field(512, ge=8, le=1_000_000)
    threads: int = Field(1, ge=0, le=1024, description="torch threads (0: torch's default); the generator is "
                         "small, and on 2 cores one thread trained it faster than two (thread hand-offs outweigh "
                         "the work)")


class _Batch(NamedTuple):
    """One step's trained items: their content rows ``x``, teacher factors ``v``, weights ``w`` and event
    counts ``n`` (columns), one user who liked each ``u`` (when asked for) and the step's random generator."""

    items: Any
    x: Any
    v: Any
    w: Any
    n: Any
    u: Any
    rng: Any


class _GeneratorMap(ContentMap):
    """What the three share: the content projected, one generator trained by a model's own loss, and every
    item's predicted vector (placed by :class:`~mosaicrec.models.mapping.ContentMap`)."""

    uses_torch = True
    lazy_map = True
    _state_keys = ("U", "V")
    #: the generator reads [collaborative vector, content] (zeros for the vector of an item without events)
    reads_preference = False

    def _objective(self, torch: Any) -> Callable[[Any, _Batch], Any]:
        """The loss of one batch (a function of the generator and the batch)."""
        raise NotImplementedError

    def _map(self, F: np.ndarray, fit: np.ndarray, counts: np.ndarray, train: Interactions) -> np.ndarray:
        torch = _torch()
        X = _project(F, fit, self.config.input_dim)
        k = self.V_.shape[1] if self.reads_preference else 0
        gen = _train(X, self.V_, self.U_, fit, counts, train, self.config, self._objective(torch), extra_inputs=k)
        with torch.no_grad():
            x = torch.from_numpy(X)
            return gen(torch.cat([torch.zeros(len(x), k), x], 1) if k else x).numpy()


@register("dropoutnet")
class DropoutNet(_GeneratorMap):
    """ALS with new items placed by a DropoutNet item tower (see the module)."""

    class Config(ColdNetConfig):
        pref_dropout: float = Field(0.5, ge=0, le=1, description="share of trained items whose collaborative "
                                    "input is dropped in each step (1: content only)")

    reads_preference = True

    def _objective(self, torch: Any) -> Callable[[Any, _Batch], Any]:
        cfg = self.config
        U = torch.from_numpy(self.U_.astype(np.float32))
        G = (U.T @ U) / max(len(U), 1)  # the mean over users of (u·(g − v))²

        def loss(gen: Any, batch: _Batch) -> Any:
            keep = (torch.rand(len(batch.items), 1, generator=batch.rng) >= cfg.pref_dropout).float()
            d = gen(torch.cat([batch.v * keep, batch.x], 1)) - batch.v
            return (batch.w * ((d @ G) * d).sum(1, keepdim=True)).sum() / batch.w.sum()

        return loss


@register("clcrec")
class CLCRec(_GeneratorMap):
    """ALS with new items placed by a CLCRec-style contrastive content encoder (see the module)."""

    class Config(ColdNetConfig):
        temperature: float = Field(0.2, gt=0, le=10, description="of the item-side (cosine) InfoNCE")
        item_weight: float = Field(0.5, ge=0, le=1, description="weight of the item-side InfoNCE; the rest "
                                   "goes to the user–item one")

    def _objective(self, torch: Any) -> Callable[[Any, _Batch], Any]:
        cfg = self.config
        f = torch.nn.functional

        def loss(gen: Any, batch: _Batch) -> Any:
            g = gen(batch.x)
            target = torch.arange(len(g))
            sim = f.normalize(g, dim=1) @ f.normalize(batch.v, dim=1).T / cfg.temperature
            each = (cfg.item_weight * f.cross_entropy(sim, target, reduction="none")
                    + (1 - cfg.item_weight) * f.cross_entropy(batch.u @ g.T, target, reduction="none"))
            return (batch.n[:, 0] * each).sum() / batch.n.sum()

        return loss


@register("aldi")
class ALDI(_GeneratorMap):
    """ALS with new items placed by a generator distilled from ALS's warm item factors (see the module)."""

    class Config(ColdNetConfig):
        distill_weight: float = Field(1.0, ge=0, le=1000, description="weight of the three alignment terms "
                                      "against the BPR term")
        temperature: float = Field(1.0, gt=0, le=100, description="of the identification alignment's softmax")

    def _objective(self, torch: Any) -> Callable[[Any, _Batch], Any]:
        cfg = self.config
        f = torch.nn.functional

        def loss(gen: Any, batch: _Batch) -> Any:
            g = gen(batch.x)
            neg = torch.roll(torch.arange(len(g)), 1)  # the batch's next item: another trained item
            s = (batch.u * (g - g[neg])).sum(1)  # the student's score gap
            t = (batch.u * (batch.v - batch.v[neg])).sum(1)  # the teacher's
            w = batch.w[:, 0] * batch.w[neg, 0]
            rec = -f.logsigmoid(s).mean()
            rate = (w * (s - t) ** 2).sum() / w.sum()
            rank = (w * f.binary_cross_entropy_with_logits(s, torch.sigmoid(t), reduction="none")).sum() / w.sum()
            ident = f.kl_div(f.log_softmax(g @ g.T / cfg.temperature, 1),
                             f.log_softmax(batch.v @ batch.v.T / cfg.temperature, 1),
                             log_target=True, reduction="batchmean")
            return rec + cfg.distill_weight * (rate + rank + ident)

        return loss


def _train(X: np.ndarray, V: np.ndarray, users: np.ndarray, fit: np.ndarray, counts: np.ndarray,
           train: Interactions, cfg: ColdNetConfig, loss: Callable[[Any, _Batch], Any], *,
           extra_inputs: int = 0) -> Any:
    """Train a generator on the trained items with content (``fit``), ``epochs`` passes over them in
    batches of ``batch_size`` distinct items, each paired with one of the users who liked it (a fresh draw
    each pass; ``users`` are their vectors); returns it in eval mode.

    Batches are of items, not events: the generator's cost is one pass per item row, and a pass over
    ML-100K's 40,000 liked events cost 30 times one over its 1,300 trained items, for the same number of
    distinct inputs."""
    torch = _torch()
    with _threads(torch, cfg.threads):
        torch.manual_seed(cfg.seed)
        rng = torch.Generator().manual_seed(cfg.seed)
        gen = _generator(torch, X.shape[1] + extra_inputs, cfg)
        opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rows = np.flatnonzero(fit)
        Xt, Vt = torch.from_numpy(X[rows]), torch.from_numpy(np.ascontiguousarray(V[rows], np.float32))
        Wt = _weights(torch, counts[rows], cfg.weigh_by_events)
        Nt = torch.from_numpy(counts[rows].astype(np.float32))[:, None]
        by_item = train.matrix.T.tocsr()[rows]
        indptr = torch.from_numpy(by_item.indptr.astype(np.int64))
        liked = torch.from_numpy(by_item.indices.astype(np.int64))
        Ut = torch.from_numpy(np.ascontiguousarray(users, np.float32))
        gen.train()
        for _ in range(cfg.epochs):
            for idx in torch.randperm(len(rows), generator=rng).split(cfg.batch_size):
                if len(idx) < 2:
                    continue
                start, n = indptr[idx], indptr[idx + 1] - indptr[idx]
                u = Ut[liked[start + (torch.rand(len(idx), generator=rng) * n).long()]]
                value = loss(gen, _Batch(idx, Xt[idx], Vt[idx], Wt[idx], Nt[idx], u, rng))
                opt.zero_grad()
                value.backward()
                opt.step()
        gen.eval()
    return gen


def _project(F: np.ndarray, fit: np.ndarray, dim: int) -> np.ndarray:
    """Content rows on their top ``dim`` principal directions among the trained items (0 or more than
    the content has: as they are). Fused content is wide (posters alone are 1,280-d) and the generator's
    first layer is most of its cost; the directions come from the trained items alone."""
    F = np.asarray(F, np.float32)
    if dim <= 0 or dim >= min(F.shape[1], int(fit.sum())):
        return np.ascontiguousarray(F)
    from sklearn.utils.extmath import randomized_svd  # a tenth of a full SVD's time at 1,300 × 1,700

    mean = F[fit].mean(axis=0)
    _, _, vt = randomized_svd(F[fit] - mean, dim, n_iter=4, random_state=0)
    return np.ascontiguousarray((F - mean) @ vt[:dim].T, np.float32)


class _threads:
    """Run with ``n`` torch threads (0: as they are), restoring the count after."""

    def __init__(self, torch: Any, n: int) -> None:
        self.torch, self.n, self.old = torch, n, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            self.torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        self.torch.set_num_threads(self.old)


def _generator(torch: Any, d_in: int, cfg: ColdNetConfig) -> Any:
    nn = torch.nn
    return nn.Sequential(nn.Dropout(cfg.input_dropout), nn.Linear(d_in, cfg.hidden), nn.GELU(),
                         nn.Linear(cfg.hidden, cfg.factors))


def _weights(torch: Any, counts: np.ndarray, by_events: bool) -> Any:
    """Per-item weights of the teacher (a column): log(1 + events) when ``by_events``, else 1; a factor
    learned from two events is mostly noise."""
    w = np.log1p(counts) if by_events else np.ones(len(counts))
    return torch.from_numpy(w.astype(np.float32))[:, None]
