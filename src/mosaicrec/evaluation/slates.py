"""Off-policy estimators for slates: what a target policy's lists would have earned, estimated from lists a
logging policy drew at random and the rewards each shown item got.

A log is a set of rounds (lists), each of ``l`` positions; a row is one shown item at one position with the
logger's probability of showing that item *at that position* (``μ(a | x, j)``) and its reward. Values are
per shown slot: the mean reward of a list's slots.

Position estimators (reward at position j depends on the item there only; rows weighted by ``w = π(a | x,
j) / μ(a | x, j)``), equal to Open Bandit Pipeline's ``InverseProbabilityWeighting``,
``SelfNormalizedInverseProbabilityWeighting`` and ``DoublyRobust`` given the same positions:

* ``ips``: mean of w r over rows. Unbiased where μ > 0 at every (item, position) the target fills.
* ``snips``: Σ w r / Σ w: a little biased, far less variable when weights are large.
* ``dr`` (Dudík et al. 2011): mean of q̂_π(x, j) + w (r − q̂(x, a, j)), q̂ a reward model and q̂_π its
  expectation under the target at that position.

Position-based-model estimators (``pbm-…``; Craswell et al. 2008, Li et al. 2018): a shown item is
examined with a probability ``θ_j`` that depends on its position only and then liked with a probability that
depends on the item (and user) only. The weight of a row is then the target's *exposure* of the item over
the logger's, ``w = Σ_j θ_j π(a | x, j) / Σ_j θ_j μ(a | x, j)``: a target's item counts wherever the logger
showed it, not only at the same position, so a log supports many more targets. ``θ`` is estimated from the
lists the logger drew uniformly at random (ε-greedy's random draws, where every item is equally likely at
every position, so the reward rate per position is θ_j up to a constant); with too few, θ = 1 (stated).

``pi``, the pseudo-inverse estimator (Swaminathan et al. 2017): with a slate reward that adds over
positions, V̂ = mean over rounds of r(s) · q_πᵀ Γ_μ⁺ 1_s, 1_s the logged slate's (position, item) indicator,
q_π the target's expected indicator and Γ_μ = E_μ[1_s 1_sᵀ] the logger's joint slot probabilities. It needs
the slate's total reward only. Γ is known exactly for ε-greedy (the greedy slate with 1 − ε, a uniformly
random ordered draw of C candidates with ε), whose pseudo-inverse has a closed form (see
:func:`pi_weights`), so no (lC × lC) matrix is ever built.

Every estimate comes with a percentile bootstrap interval over rounds (a list's rows move together) and
the effective sample size of its weights, ESS = (Σ w)² / Σ w²: how many rows an unweighted mean of equal
precision would have. :func:`estimate` computes them from per-row inputs; the service's log is turned into
those by :mod:`mosaicrec.evaluation.service_log`.

Written by hand: Open Bandit Pipeline (``obp`` 0.5.7) holds the position estimators (and the benchmark
``benchmarks/ope_obp.py`` checks ours against it to 1e-6) but pins Python < 3.11 and torch 1.12, and has
neither the pseudo-inverse estimator nor the position-based model's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITION = ("ips", "snips", "dr")
ESTIMATORS = POSITION + ("pbm-ips", "pbm-snips", "pbm-dr", "pi")


@dataclass(frozen=True)
class SlateEstimate:
    """One estimator's value per slot, its ``1 − alpha`` bootstrap interval and the effective sample size
    of its weights (rows; rounds for ``pi``)."""

    value: float
    low: float
    high: float
    ess: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "ess": self.ess}


def ess(weights: np.ndarray) -> float:
    """(Σ w)² / Σ w²: the effective sample size of a weighted mean."""
    w = np.asarray(weights, np.float64)
    sq = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / sq) if sq > 0 else 0.0


def ips(rewards: np.ndarray, weights: np.ndarray) -> float:
    return float(np.mean(np.asarray(weights, np.float64) * np.asarray(rewards, np.float64)))


def snips(rewards: np.ndarray, weights: np.ndarray) -> float:
    w = np.asarray(weights, np.float64)
    return float(np.sum(w * np.asarray(rewards, np.float64)) / w.sum()) if w.sum() > 0 else float("nan")


def dr(rewards: np.ndarray, weights: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray) -> float:
    w = np.asarray(weights, np.float64)
    return float(np.mean(np.asarray(q_target, np.float64)
                         + w * (np.asarray(rewards, np.float64) - np.asarray(q_logged, np.float64))))


def pbm_weights(pi_exposure: np.ndarray, mu_exposure: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``rows × l`` probabilities of the row's item at each position under the target (``pi_exposure``)
    and the logger (``mu_exposure``), and the examination probabilities ``θ`` (``l``): each row's weight
    Σ_j θ_j π_j / Σ_j θ_j μ_j (the logger's is positive for a shown item)."""
    theta = np.asarray(theta, np.float64)
    return (np.asarray(pi_exposure, np.float64) @ theta) / (np.asarray(mu_exposure, np.float64) @ theta)


def pi_weights(n_candidates: int, epsilon: float, greedy: np.ndarray, logged: np.ndarray,
               target: np.ndarray) -> float:
    """The pseudo-inverse weight q_πᵀ Γ⁺ 1_s of one round whose logger was ε-greedy over ``n_candidates``
    (C), for a deterministic target; ``greedy``, ``logged``, ``target``: the slates as candidate indices
    per position (``l`` each; the target's −1 where it shows an item outside the candidates: then NaN, the
    round does not support it).

    Γ = ε U + (1 − ε) g gᵀ, U the joint slot probabilities of a uniformly random ordered draw: 1/C on the
    diagonal, 1/(C(C−1)) for two different items at two different positions, 0 otherwise. On (l × C)
    matrices U = (1/C) I + (J_l − I) ⊗ (J_C − I) / (C(C−1)), whose eigenspaces are the products of
    {constant, centred} over positions and items, with eigenvalues l/C, (C − l)/(C(C − 1)), 0 and 1/(C − 1),
    so U⁺ is three projections; g lies in U's range, so Sherman–Morrison gives Γ⁺ (on that range)."""
    c, l = int(n_candidates), len(logged)
    if np.any(np.asarray(target) < 0) or len(target) != l:
        return float("nan")
    if epsilon <= 0:  # deterministic: Γ = g gᵀ, supported only where the target is the greedy slate
        return 1.0 if np.array_equal(target, greedy) else float("nan")

    def onehot(slate: np.ndarray) -> np.ndarray:
        m = np.zeros((l, c))
        m[np.arange(l), np.asarray(slate, np.int64)] = 1.0
        return m

    def u_pinv(v: np.ndarray) -> np.ndarray:
        centred = v - v.mean(axis=1, keepdims=True)          # (· ⊗ Q_C)
        slot_mean = centred.mean(axis=0, keepdims=True)     # (P_l ⊗ Q_C)
        out = (c / l) * v.mean() + (c - 1) * (centred - slot_mean)
        if c > l:
            out = out + (c * (c - 1) / (c - l)) * slot_mean
        return out

    q, s, g = onehot(target), onehot(logged), onehot(greedy)
    a_s, a_g = u_pinv(s) / epsilon, u_pinv(g) / epsilon
    k = 1 - epsilon
    return float(np.sum(q * a_s) - k * np.sum(q * a_g) * np.sum(g * a_s) / (1 + k * np.sum(g * a_g)))


def estimate(rounds: np.ndarray, rewards: np.ndarray, weights: dict[str, np.ndarray], *,
             q_logged: np.ndarray | None = None, q_target: dict[str, np.ndarray] | None = None,
             pi_round: np.ndarray | None = None, slate_length: np.ndarray | None = None, n_boot: int = 200,
             alpha: float = 0.05, seed: int = 0) -> dict[str, SlateEstimate]:
    """The estimators the inputs allow, with bootstrap intervals over rounds. Per row: ``rounds`` (its
    round, 0…R−1), ``rewards``; ``weights``: per weighting (``"position"``, ``"pbm"``) the rows' weights;
    ``q_logged`` / ``q_target`` (per weighting): the reward model at the row and its expectation under the
    target at the row's position (for ``dr``). Per round: ``pi_round``, the pseudo-inverse weight (NaN
    where unsupported: counted as 0, see the caller), with ``slate_length``."""
    rounds = np.asarray(rounds, np.int64)
    r = np.asarray(rewards, np.float64)
    n_rounds = int(rounds.max()) + 1 if len(rounds) else 0
    if n_rounds == 0:
        return {}
    if not 0 < alpha < 1 or n_boot < 0:
        raise ValueError("alpha must lie in (0, 1) and n_boot be ≥ 0")

    def per_round(x: np.ndarray) -> np.ndarray:
        return np.bincount(rounds, weights=x, minlength=n_rounds)

    rows = per_round(np.ones(len(r)))
    # each estimator as (numerator, denominator) sums over rounds: a bootstrap resample is a count per round
    parts: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for kind, w in weights.items():
        w = np.asarray(w, np.float64)
        prefix = "" if kind == "position" else f"{kind}-"
        wr = per_round(w * r)
        e = ess(w)
        parts[prefix + "ips"] = (wr, rows, e)
        parts[prefix + "snips"] = (wr, per_round(w), e)
        if q_logged is not None and q_target is not None and kind in q_target:
            parts[prefix + "dr"] = (per_round(np.asarray(q_target[kind], np.float64)
                                              + w * (r - np.asarray(q_logged, np.float64))), rows, e)
    if pi_round is not None:
        pw = np.nan_to_num(np.asarray(pi_round, np.float64), nan=0.0)
        length = np.asarray(slate_length if slate_length is not None else rows, np.float64)
        parts["pi"] = (pw * per_round(r), length, ess(pw))
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n_rounds, n_rounds), minlength=n_rounds)
                       for _ in range(n_boot)]) if n_boot else np.zeros((0, n_rounds))
    out = {}
    for name, (num, den, e) in parts.items():
        value = float(num.sum() / den.sum()) if den.sum() != 0 else float("nan")
        if n_boot:
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = (counts @ num) / (counts @ den)
            boot = boot[np.isfinite(boot)]
        else:
            boot = np.empty(0)
        low, high = (np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (value, value))
        out[name] = SlateEstimate(value, float(low), float(high), e)
    return out
