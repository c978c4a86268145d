"""Contextual bandits over item features: ε-greedy, LinUCB and linear Thompson sampling, one item or a slate.

One linear reward model is shared by every item (a catalog has too many items for a model each): the
expected reward of showing item a in context x is θ · φ(x, a), with φ the outer product of [1, context
features] and the item's vector (e.g. its fused content embedding), so the context changes which items
score well. Ridge statistics ``A = λI + Σ φφᵀ`` and ``b = Σ r φ`` are all the state: an update is a rank-k
change of A (any order of the same events gives the same state), and the state saves to plain arrays.

Policies, each picking ``k`` items (a slate) and reporting the propensity of every shown item *at its
position*, i.e. the probability that the policy would show it there in this context, which the impression
log keeps for off-policy evaluation of slates (:mod:`mosaicrec.evaluation.slates`):

* ``epsilon-greedy``: the top k by θ̂ · φ, or with probability ε a uniformly random ordered draw of k;
  propensity of item a at position j (1 − ε)·[a is the top list's j-th] + ε / n, exactly.
* ``linucb`` (Li et al. 2010): the top k by θ̂ · φ + α √(φᵀ A⁻¹ φ); deterministic (propensity 1), so a
  LinUCB log cannot evaluate another policy: mix it with ε where the log must serve that purpose.
* ``thompson`` (Agrawal & Goyal 2013): θ ~ N(θ̂, v² A⁻¹), the top k by θ · φ; propensities by Monte Carlo
  over ``propensity_samples`` draws (floored at 1 / (2·samples) for a shown item, so weights stay finite).

Written by hand: the libraries that fit (MABWiser, Vowpal Wabbit) keep a model per arm or their own
feature hashing, not one ridge model over item embeddings with slates and propensities; this is a few
lines of linear algebra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.ranking.explore import count_positions, epsilon_greedy_marginals

Policy = Literal["epsilon-greedy", "linucb", "thompson"]


class BanditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Policy = "linucb"
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon-greedy: share of random slates")
    alpha: float = Field(1.0, ge=0, le=100, description="linucb: width of the confidence bonus")
    v: float = Field(0.5, ge=0, le=100, description="thompson: scale of the posterior's spread")
    reg: float = Field(1.0, gt=0, le=1e6, description="ridge λ: the prior's precision")
    propensity_samples: int = Field(200, ge=10, le=100_000, description="thompson: Monte Carlo draws")


def features(items: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
    """φ(x, a) for every item a: ``n_items × (d · (c + 1))``, the outer product of [1, x] and the item's
    vector (``items``: ``n × d``; ``context``: ``c`` values, or None for no context)."""
    items = np.asarray(items, np.float64)
    if items.ndim != 2:
        raise ValueError("features: items must be a 2-d array (items × dimensions)")
    ctx = np.concatenate([[1.0], np.asarray(context if context is not None else [], np.float64).ravel()])
    if not np.all(np.isfinite(ctx)) or not np.all(np.isfinite(items)):
        raise ValueError("features: item vectors and context values must be finite numbers")
    return (ctx[None, :, None] * items[:, None, :]).reshape(len(items), -1)


@dataclass
class Slate:
    items: np.ndarray         # positions into the candidates, best first
    propensities: np.ndarray  # probability that the policy shows each of them at its position, in this context
    greedy: np.ndarray        # the slate it shows when it does not explore
    explored: bool = False    # epsilon-greedy: this slate was drawn at random


class LinearBandit:
    """A shared ridge model over φ with one of the policies above (see the module)."""

    def __init__(self, dim: int, config: BanditConfig | dict | None = None, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError("LinearBandit: dim must be ≥ 1")
        self.config = config if isinstance(config, BanditConfig) else BanditConfig(**(config or {}))
        self.dim = int(dim)
        self.A = np.eye(self.dim) * self.config.reg
        self.b = np.zeros(self.dim)
        self.n_updates = 0
        self.rng = np.random.default_rng(seed)

    # -- model ------------------------------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        return np.linalg.solve(self.A, self.b)

    def update(self, phi: np.ndarray, rewards: np.ndarray) -> None:
        """Add observed (φ, reward) rows: every shown item of a slate is one row."""
        phi = self._check(phi)
        r = np.asarray(rewards, np.float64).ravel()
        if len(r) != len(phi) or not np.all(np.isfinite(r)):
            raise ValueError(f"update: {len(phi)} feature rows need as many finite rewards, got {len(r)}")
        self.A += phi.T @ phi
        self.b += phi.T @ r
        self.n_updates += len(r)

    def expected(self, phi: np.ndarray) -> np.ndarray:
        """θ̂ · φ for each row: the model's reward estimate (the greedy score)."""
        return self._check(phi) @ self.theta

    # -- choice -----------------------------------------------------------------------------------------
    def select(self, phi: np.ndarray, k: int = 1) -> Slate:
        """Pick ``k`` of the candidate rows of ``phi`` (best first) with their propensities."""
        phi = self._check(phi)
        n = len(phi)
        if not 1 <= k <= n:
            raise ValueError(f"select: k must be between 1 and the number of candidates ({n}), got {k}")
        cfg = self.config
        if cfg.policy == "epsilon-greedy":
            top = _top(self.expected(phi), k)
            explored = bool(self.rng.random() < cfg.epsilon)
            chosen = self.rng.choice(n, k, replace=False) if explored else top
            return Slate(chosen, epsilon_greedy_marginals(cfg.epsilon, n, top, chosen)[np.arange(k), np.arange(k)], top,
                         explored)
        if cfg.policy == "linucb":
            top = _top(self.ucb(phi), k)
            return Slate(top, np.ones(k), top)
        draws = self._thompson_scores(phi, 1)[0]
        chosen = _top(draws, k)
        return Slate(chosen, self.propensities(phi, k)[chosen, np.arange(k)], _top(self.expected(phi), k))

    def ucb(self, phi: np.ndarray) -> np.ndarray:
        phi = self._check(phi)
        width = np.sqrt(np.einsum("ij,ij->i", phi, np.linalg.solve(self.A, phi.T).T).clip(min=0))
        return phi @ self.theta + self.config.alpha * width

    def propensities(self, phi: np.ndarray, k: int = 1) -> np.ndarray:
        """``n × k``: the probability that each candidate is shown at each position of the policy's slate
        of ``k`` (thompson: Monte Carlo, floored at 1 / (2·samples)); a row's sum is its probability of
        being in the slate at all."""
        phi = self._check(phi)
        n, cfg = len(phi), self.config
        if cfg.policy in ("epsilon-greedy", "linucb"):
            top = _top(self.expected(phi) if cfg.policy == "epsilon-greedy" else self.ucb(phi), k)
            return epsilon_greedy_marginals(cfg.epsilon if cfg.policy == "epsilon-greedy" else 0.0, n, top,
                                            np.arange(n))
        s = cfg.propensity_samples
        out = np.zeros((n, k))
        count_positions(self._thompson_scores(phi, s), k, out)
        return np.maximum(out / s, 1 / (2 * s))

    def _thompson_scores(self, phi: np.ndarray, samples: int) -> np.ndarray:
        """``samples × n`` scores, each under one draw of θ from the posterior."""
        cov = np.linalg.inv(self.A) * self.config.v ** 2
        chol = np.linalg.cholesky((cov + cov.T) / 2 + 1e-12 * np.eye(self.dim))
        thetas = self.theta[None, :] + self.rng.standard_normal((samples, self.dim)) @ chol.T
        return thetas @ phi.T

    # -- state ------------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to carry on after a restart (the random stream restarts from its seed)."""
        return {"A": self.A.copy(), "b": self.b.copy(), "n_updates": np.array(self.n_updates),
                "config": np.array(self.config.model_dump_json())}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], seed: int = 0) -> LinearBandit:
        A, b = np.asarray(state["A"], np.float64), np.asarray(state["b"], np.float64)
        if A.ndim != 2 or A.shape != (len(b), len(b)) or not np.all(np.isfinite(A)) or not np.all(np.isfinite(b)):
            raise ValueError("bandit state: A must be a finite d × d matrix and b a finite d-vector")
        out = cls(len(b), BanditConfig.model_validate_json(str(state["config"])), seed)
        out.A, out.b, out.n_updates = A.copy(), b.copy(), int(state["n_updates"])
        return out

    def _check(self, phi: np.ndarray) -> np.ndarray:
        phi = np.asarray(phi, np.float64)
        if phi.ndim != 2 or phi.shape[1] != self.dim:
            raise ValueError(f"expected feature rows of width {self.dim}, got shape {phi.shape}")
        return phi


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]
