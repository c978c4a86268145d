"""Matrix factorisation: ALS for implicit feedback, BPR, and a biased MF rating predictor.

All three learn user factors U and item factors V (plus biases where the model has them) with numba
kernels (:mod:`mosaicrec.models._kernels`); scoring is one dense product U[users] Vᵀ.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import threadpool_limits

from mosaicrec.data.schema import Interactions
from mosaicrec.models import _kernels
from mosaicrec.models.query import Query
from mosaicrec.models.base import BaseRecommender, ModelConfig
from mosaicrec.models.registry import register


def fold_in(V: np.ndarray, history: sp.csr_matrix, reg: float = 0.1, unobserved: float = 0.05,
            target: float = 1.0, gram: np.ndarray | None = None, offset: np.ndarray | None = None) -> np.ndarray:
    """User vectors for new users from their events, with the item factors fixed: the implicit-ALS user
    step u = (c₀·VᵀV + V_hᵀV_h + λI)⁻¹ V_hᵀ·t, where every unobserved item pulls towards 0 with weight
    c₀ and an observed item towards ``target`` t (the typical score of a trained user's positives, so
    that a folded-in user's scores have the same scale as the item biases they are added to).
    ``offset`` (``n × f``) is a part of each user's vector already known (e.g. from their profile): the
    solve then fits the rest, u = o + q, with λ shrinking q (not o) to zero. Users with no events get a
    zero vector (their offset, with one). ``gram`` is VᵀV (float64) when the caller keeps it: over a
    large catalog it costs more than the solves, and a server folds in one user per request."""
    if gram is None:
        gram = V.T.astype(np.float64) @ V.astype(np.float64)
    G = unobserved * gram + reg * np.eye(V.shape[1])
    out = np.zeros((history.shape[0], V.shape[1]), np.float32) if offset is None else offset.astype(np.float32)
    for r in range(history.shape[0]):
        cols = history.indices[history.indptr[r]:history.indptr[r + 1]]
        if len(cols):
            Vh = V[cols].astype(np.float64)
            rhs = target * Vh.sum(axis=0)
            if offset is not None:
                rhs = rhs - (unobserved * gram + Vh.T @ Vh) @ offset[r]
            out[r] += np.linalg.solve(G + Vh.T @ Vh, rhs).astype(np.float32)
    return out


class FactorScoring:
    """Scoring of models whose scores are ``q_u·v_i + b_i``: U_ holds trained users' vectors, V_ the
    items', ``item_bias_`` or ``b_`` the biases if any; new users are folded in (:func:`fold_in`)."""

    U_: np.ndarray
    V_: np.ndarray

    def _scores(self, query: Query) -> np.ndarray:
        V, b = self.item_factors()
        s = self.query_factors(query) @ V.T
        return s if b is None else s + b

    def item_factors(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.V_, getattr(self, "b_", getattr(self, "item_bias_", None))

    def query_factors(self, query: Query) -> np.ndarray:
        if query.new_users:
            return fold_in(self.V_, query.history, gram=self._gram(), **self._fold_options())
        return self.U_[self._check_users(query.users)]

    def _fold_options(self) -> dict[str, float]:
        return {}

    def _gram(self) -> np.ndarray:
        """VᵀV, kept while V_ is the same array: it costs more than the solves over a large catalog,
        and a server folds in a user per request. Fitting makes a new V_, so it is never stale."""
        hit = self.__dict__.get("_gram_of")
        if hit is None or hit[0] is not self.V_:
            V64 = self.V_.astype(np.float64)
            hit = self._gram_of = (self.V_, V64.T @ V64)
        return hit[1]


class _FactorModel(FactorScoring, BaseRecommender):
    """Shared state and scoring of factor models: U (users × f), V (items × f), optional biases."""

    #: seconds per epoch and the monitored loss, filled by ``fit`` (for progress reports and tests)
    history_: list[dict]

    def _init_factors(self, n_users: int, n_items: int, factors: int, std: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.U_ = (rng.standard_normal((n_users, factors)) * std).astype(np.float32)
        self.V_ = (rng.standard_normal((n_items, factors)) * std).astype(np.float32)
        self.history_ = []

    def _state(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k + "_") for k in self._state_keys}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        for k in self._state_keys:
            setattr(self, k + "_", state[k])

    _state_keys: tuple[str, ...] = ("U", "V")


class ALSConfig(ModelConfig):
    factors: int = Field(64, ge=1)
    regularization: float = Field(0.01, ge=0.0)
    alpha: float = Field(1.0, gt=0.0, description="confidence c_ui = 1 + alpha · r_ui")
    iterations: int = Field(15, ge=1)
    cg_steps: int = Field(3, ge=1, description="conjugate-gradient steps per row and half-iteration")
    seed: int = 42
    num_threads: int = Field(0, ge=0, description="0: all cores")
    workers: int = Field(0, ge=0, le=4096, description="Ray workers solving shards of the rows (the same "
                         "model as one process; mosaicrec.models.distributed); 0: this process")
    ray_address: str | None = Field(None, description="Ray cluster for workers > 0 [default: "
                                    "$MOSAICREC_RAY_ADDRESS, else a local cluster]")


@register("als")
class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with the conjugate-gradient solver of Takács et
    al. 2011, as in implicit: each half-step updates every user (then item) factor in parallel.
    Deterministic for a seed: rows are independent, so threads do not race."""

    Config = ALSConfig

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        X = train.matrix
        self._init_factors(train.n_users, train.n_items, cfg.factors, 0.01, cfg.seed)
        if cfg.workers:  # before the transpose and confidences: fit_als makes its own, sliced per worker
            from mosaicrec.models.distributed import fit_als

            self.U_, self.V_ = fit_als(X, self.U_, self.V_, alpha=cfg.alpha, regularization=cfg.regularization,
                                       iterations=cfg.iterations, cg_steps=cfg.cg_steps, workers=cfg.workers,
                                       address=cfg.ray_address, on_iteration=self._epoch_done)
            return
        Xt = X.T.tocsr()
        conf_u = (1.0 + cfg.alpha * X.data).astype(np.float32)
        conf_i = (1.0 + cfg.alpha * Xt.data).astype(np.float32)
        eye = np.eye(cfg.factors, dtype=np.float32) * cfg.regularization
        _kernels.set_threads(cfg.num_threads)
        with threadpool_limits(1):  # the kernel parallelises; nested BLAS threads would oversubscribe
            for it in range(cfg.iterations):
                t0 = time.perf_counter()
                _kernels.als_cg_half_step(X.indptr, X.indices, conf_u, self.U_, self.V_,
                                          self.V_.T @ self.V_ + eye, cfg.cg_steps)
                _kernels.als_cg_half_step(Xt.indptr, Xt.indices, conf_i, self.V_, self.U_,
                                          self.U_.T @ self.U_ + eye, cfg.cg_steps)
                self._epoch_done({"iteration": it, "seconds": time.perf_counter() - t0})


class BPRConfig(ModelConfig):
    factors: int = Field(64, ge=1)
    learning_rate: float = Field(0.01, gt=0.0)
    regularization: float = Field(0.01, ge=0.0)
    iterations: int = Field(100, ge=1, description="epochs; each draws as many samples as training pairs")
    seed: int = 42
    num_threads: int = Field(0, ge=0, description="0: all cores; 1 makes training bit-for-bit repeatable")
    workers: int = Field(0, ge=0, le=4096, description="Ray workers, each on a shard of the users, mixing "
                         "their item updates (mosaicrec.models.distributed); 0: this process")
    syncs: int = Field(4, ge=1, le=1000, description="with workers: item-side exchanges per epoch")
    ray_address: str | None = Field(None, description="Ray cluster for workers > 0 [default: "
                                    "$MOSAICREC_RAY_ADDRESS, else a local cluster]")


@register("bpr")
class BPR(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) with an item bias, trained by SGD on uniformly
    sampled (user, seen item, unseen item) triples. With more than one thread the updates are lock-free
    (Hogwild), so results vary slightly from run to run; ``num_threads=1`` is exactly repeatable."""

    Config = BPRConfig
    _state_keys = ("U", "V", "item_bias")

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        X = train.binary
        self._init_factors(train.n_users, train.n_items, cfg.factors, 0.01, cfg.seed)
        self.item_bias_ = np.zeros(train.n_items, dtype=np.float32)
        if cfg.workers:  # each worker builds its own event arrays from its rows
            from mosaicrec.models.distributed import fit_bpr

            self.U_, self.V_, self.item_bias_ = fit_bpr(
                X, self.U_, self.V_, self.item_bias_, learning_rate=cfg.learning_rate,
                regularization=cfg.regularization, iterations=cfg.iterations, seed=cfg.seed, workers=cfg.workers,
                syncs=cfg.syncs, address=cfg.ray_address, on_iteration=self._epoch_done)
            return
        users_of_entry = np.repeat(np.arange(X.shape[0], dtype=np.int32), np.diff(X.indptr))
        items = X.indices.astype(np.int32)
        threads = _kernels.set_threads(cfg.num_threads)
        lr, reg = np.float32(cfg.learning_rate), np.float32(cfg.regularization)
        for it in range(cfg.iterations):
            t0 = time.perf_counter()
            skipped, correct = _kernels.bpr_epoch_plain(
                users_of_entry, items, X.indptr, X.indices, self.U_, self.V_, self.item_bias_, lr, reg, threads,
                np.uint64(cfg.seed * 1_000_003 + it))
            self._epoch_done({"iteration": it, "seconds": time.perf_counter() - t0,
                                  "correct": correct, "skipped": skipped})



class BiasedMFConfig(ModelConfig):
    factors: int = Field(100, ge=1)
    learning_rate: float = Field(0.005, gt=0.0)
    regularization: float = Field(0.02, ge=0.0, description="L2 on the factors")
    bias_regularization: float = Field(0.02, ge=0.0, description="L2 on the biases")
    epochs: int = Field(20, ge=1)
    init_std: float = Field(0.1, gt=0.0)
    seed: int = 42


@register("biasedmf")
class BiasedMF(_FactorModel):
    """Rating predictor r̂_ui = μ + b_u + b_i + p_uᵀq_i trained by SGD on squared error (Koren et al. 2009,
    the "SVD" of the Netflix prize). Deterministic for a seed. Trains on the explicit ratings; ranking
    uses the predicted rating."""

    Config = BiasedMFConfig
    predicts_ratings = True
    _state_keys = ("U", "V", "user_bias", "item_bias", "mu")

    def _fit(self, train: Interactions) -> None:
        cfg = self.config
        self._init_factors(train.n_users, train.n_items, cfg.factors, cfg.init_std, cfg.seed)
        self.user_bias_ = np.zeros(train.n_users, dtype=np.float32)
        self.item_bias_ = np.zeros(train.n_items, dtype=np.float32)
        ratings = train.weights.astype(np.float32)
        self.mu_ = np.array(ratings.mean(), dtype=np.float32)
        rng = np.random.default_rng(cfg.seed)
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            rmse = _kernels.biased_mf_epoch(train.users, train.items, ratings,
                                            rng.permutation(train.n_events), float(self.mu_),
                                            self.user_bias_, self.item_bias_, self.U_, self.V_,
                                            cfg.learning_rate, cfg.regularization, cfg.bias_regularization)
            self._epoch_done({"iteration": epoch, "seconds": time.perf_counter() - t0, "train_rmse": rmse})

    def _scores(self, query: Query) -> np.ndarray:
        s = super()._scores(query) + self.mu_
        return (s if query.new_users else s + self.user_bias_[query.users, None]).astype(np.float32)
