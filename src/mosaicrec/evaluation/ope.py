"""Off-policy evaluation: the value a new policy would have had, estimated from a log another policy made.

A log row is one shown action: the round it belongs to, the action ``a_i`` (arm, item), the logging
policy's propensity ``p_i = π0(a_i | x_i)`` and the reward ``r_i``. A slate of k items is k rows of one
round, each with its marginal propensity of being shown (the item-position independence of "independent
IPS": the reward of a shown item depends on that item alone). The target policy π is given per row as
``π(a_i | x_i)`` (its own marginal for slates) and, for the model-based estimators, the reward model's
expectation under π, ``Σ_a π(a | x_i) q̂(x_i, a)``. Values are the expected reward per row.

* ``replay`` (Li et al. 2011): the mean reward of the rows where π picks the logged action. Unbiased when
  the logger is uniformly random; it keeps about 1 / n_actions of the log.
* ``ips``: mean of w_i r_i with w_i = π(a_i | x_i) / p_i. Unbiased where p_i > 0 for every action π takes.
* ``snips``: Σ w_i r_i / Σ w_i: self-normalised, a little biased, far less variable when weights are large.
* ``dr`` (doubly robust, Dudík et al. 2011): mean of q̂_π(x_i) + w_i (r_i − q̂(x_i, a_i)): unbiased when either
  the propensities or the reward model are right, with less variance than IPS when q̂ is good.

Confidence intervals come from a bootstrap over rounds (a slate's rows move together).

Written by hand: Open Bandit Pipeline (``obp`` 0.5.7), the library for this, needs Python < 3.11, and the
estimators are a few lines of numpy each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("replay", "ips", "snips", "dr")


@dataclass(frozen=True)
class BanditLog:
    """Logged rows (see the module): ``actions``, ``rewards`` and ``propensities`` per row, ``rounds`` (the
    round of each row; default: one row per round)."""

    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    rounds: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.actions)
        for name in ("rewards", "propensities") + (("rounds",) if self.rounds is not None else ()):
            if len(getattr(self, name)) != n:
                raise ValueError(f"BanditLog: {name} has {len(getattr(self, name))} rows, actions {n}")
        p = np.asarray(self.propensities, np.float64)
        bad = np.flatnonzero(~np.isfinite(p) | (p <= 0) | (p > 1))
        if len(bad):
            raise ValueError(f"BanditLog: propensity of row {bad[0]} is {p[bad[0]]!r}; each must be in (0, 1]")
        r = np.asarray(self.rewards, np.float64)
        bad = np.flatnonzero(~np.isfinite(r))
        if len(bad):
            raise ValueError(f"BanditLog: reward of row {bad[0]} is {r[bad[0]]!r}; rewards must be finite")

    @property
    def n(self) -> int:
        return len(self.actions)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    rows: int  # rows the estimate rests on (replay: the matched ones)

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "rows": self.rows}


def _check_probs(log: BanditLog, target: np.ndarray, name: str) -> np.ndarray:
    t = np.asarray(target, np.float64)
    if t.shape != (log.n,):
        raise ValueError(f"{name}: one target probability per logged row ({log.n}), got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t.min(initial=0) < 0 or t.max(initial=0) > 1:
        raise ValueError(f"{name}: target probabilities must lie in [0, 1]")
    return t


def replay(log: BanditLog, target_actions: np.ndarray) -> float:
    """Mean reward over the rows where the target policy's action is the logged one (NaN if none)."""
    hit = np.asarray(target_actions) == np.asarray(log.actions)
    return float(np.asarray(log.rewards, np.float64)[hit].mean()) if hit.any() else float("nan")


def ips(log: BanditLog, target_probs: np.ndarray) -> float:
    w = _check_probs(log, target_probs, "ips") / np.asarray(log.propensities, np.float64)
    return float(np.mean(w * np.asarray(log.rewards, np.float64)))


def snips(log: BanditLog, target_probs: np.ndarray) -> float:
    w = _check_probs(log, target_probs, "snips") / np.asarray(log.propensities, np.float64)
    return float(np.sum(w * np.asarray(log.rewards, np.float64)) / w.sum()) if w.sum() > 0 else float("nan")


def dr(log: BanditLog, target_probs: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray) -> float:
    """``q_logged``: the reward model at the logged action, q̂(x_i, a_i); ``q_target``: its expectation under
    the target policy, Σ_a π(a | x_i) q̂(x_i, a)."""
    w = _check_probs(log, target_probs, "dr") / np.asarray(log.propensities, np.float64)
    q_logged, q_target = np.asarray(q_logged, np.float64), np.asarray(q_target, np.float64)
    if q_logged.shape != (log.n,) or q_target.shape != (log.n,):
        raise ValueError(f"dr: q_logged and q_target need one value per logged row ({log.n})")
    return float(np.mean(q_target + w * (np.asarray(log.rewards, np.float64) - q_logged)))


def evaluate_policy(log: BanditLog, *, target_probs: np.ndarray, target_actions: np.ndarray | None = None,
                    q_logged: np.ndarray | None = None, q_target: np.ndarray | None = None,
                    estimators: tuple[str, ...] = ESTIMATORS, n_boot: int = 200, alpha: float = 0.05,
                    seed: int = 0) -> dict[str, Estimate]:
    """Every estimator that the inputs allow (replay needs ``target_actions``, dr the reward model), each
    with a ``1 - alpha`` percentile bootstrap interval over rounds (``n_boot`` resamples, seeded)."""
    unknown = sorted(set(estimators) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if not 0 < alpha < 1 or n_boot < 0:
        raise ValueError("alpha must lie in (0, 1) and n_boot be ≥ 0")
    fns: dict[str, Callable[[np.ndarray], float]] = {}
    if "replay" in estimators and target_actions is not None:
        fns["replay"] = lambda rows: replay(_take(log, rows), np.asarray(target_actions)[rows])
    if "ips" in estimators:
        fns["ips"] = lambda rows: ips(_take(log, rows), np.asarray(target_probs)[rows])
    if "snips" in estimators:
        fns["snips"] = lambda rows: snips(_take(log, rows), np.asarray(target_probs)[rows])
    if "dr" in estimators and q_logged is not None and q_target is not None:
        fns["dr"] = lambda rows: dr(_take(log, rows), np.asarray(target_probs)[rows], np.asarray(q_logged)[rows],
                                    np.asarray(q_target)[rows])
    values = {name: fn(np.arange(log.n)) for name, fn in fns.items()}
    boots: dict[str, list[float]] = {name: [] for name in fns}
    order, starts, lengths = _groups(log)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        g = rng.integers(0, len(starts), len(starts))
        ln = lengths[g]
        rows = order[np.arange(ln.sum()) + np.repeat(starts[g] - np.cumsum(ln) + ln, ln)]
        for name, fn in fns.items():
            boots[name].append(fn(rows))
    out = {}
    for name, value in values.items():
        boot = np.array(boots[name] or [value])
        boot = boot[np.isfinite(boot)]
        low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (np.nan, np.nan)
        rows_used = int(np.sum(np.asarray(target_actions) == np.asarray(log.actions))) if name == "replay" else log.n
        out[name] = Estimate(value, float(low), float(high), rows_used)
    return out


def _take(log: BanditLog, rows: np.ndarray) -> BanditLog:
    # already validated as a whole: skip __post_init__'s checks on every bootstrap resample
    sub = object.__new__(BanditLog)
    for name in ("actions", "rewards", "propensities"):
        object.__setattr__(sub, name, np.asarray(getattr(log, name))[rows])
    object.__setattr__(sub, "rounds", None)
    return sub


def _groups(log: BanditLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by round (``order``), and each round's start and length in that order."""
    if log.rounds is None:
        return np.arange(log.n), np.arange(log.n), np.ones(log.n, np.int64)
    _, inverse, lengths = np.unique(np.asarray(log.rounds), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    return order, np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths


@dataclass(frozen=True)
class SyntheticBandit:
    """A logged bandit problem whose truth is known: ``mean`` (rounds × actions) is each action's expected
    reward in each round's context, ``logging`` the logger's action probabilities, the log drawn from them."""

    contexts: np.ndarray
    mean: np.ndarray
    logging: np.ndarray
    log: BanditLog

    def true_value(self, policy: np.ndarray) -> float:
        """The target policy's expected reward per round: Σ_a π(a | x) μ(x, a), averaged over the contexts."""
        return float(np.mean(np.sum(policy * self.mean, axis=1)))

    def per_row(self, policy: np.ndarray) -> np.ndarray:
        """π(a_i | x_i) for each logged row."""
        return policy[np.arange(self.log.n), self.log.actions]


def synthetic_bandit(n_rounds: int = 2000, n_actions: int = 10, dim: int = 5, *, logging: str = "softmax",
                     temperature: float = 1.0, seed: int = 0) -> SyntheticBandit:
    """Contexts x ~ N(0, I); each action's reward is Bernoulli(sigmoid(x · θ_a)). The logger is uniform
    (``logging="uniform"``) or a softmax over a noisy copy of the true scores (``"softmax"``), so it favours
    good actions without knowing them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rounds, dim))
    theta = rng.standard_normal((dim, n_actions))
    logits = x @ theta
    mean = 1 / (1 + np.exp(-logits))
    if logging == "uniform":
        probs = np.full((n_rounds, n_actions), 1.0 / n_actions)
    elif logging == "softmax":
        z = (logits + rng.standard_normal(logits.shape)) / temperature
        probs = np.exp(z - z.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"logging must be 'uniform' or 'softmax', not {logging!r}")
    actions = (probs.cumsum(axis=1) < rng.random((n_rounds, 1))).sum(axis=1).clip(max=n_actions - 1)
    rows = np.arange(n_rounds)
    rewards = (rng.random(n_rounds) < mean[rows, actions]).astype(np.float64)
    return SyntheticBandit(x, mean, probs, BanditLog(actions, rewards, probs[rows, actions]))


def epsilon_greedy_policy(scores: np.ndarray, epsilon: float) -> np.ndarray:
    """rounds × actions probabilities: the best-scored action with 1 − ε (+ its share of ε), the rest ε
    spread evenly."""
    n, k = scores.shape
    policy = np.full((n, k), epsilon / k)
    policy[np.arange(n), np.argmax(scores, axis=1)] += 1 - epsilon
    return policy


def bias_variance(make: Callable[[int], SyntheticBandit], policy_of: Callable[[SyntheticBandit], np.ndarray],
                  replications: int = 100, reward_model: Callable[[SyntheticBandit], np.ndarray] | None = None
                  ) -> dict[str, dict[str, float]]:
    """Each estimator's bias, standard deviation and RMSE against the true value over ``replications``
    logs (``make(seed)``), the target policy ``policy_of(problem)`` (rounds × actions) and, for dr, a
    reward model (rounds × actions of q̂)."""
    errors: dict[str, list[float]] = {}
    for rep in range(replications):
        problem = make(rep)
        policy = policy_of(problem)
        rows = np.arange(problem.log.n)
        truth = problem.true_value(policy)
        kwargs = {}
        if reward_model is not None:
            q = reward_model(problem)
            kwargs = {"q_logged": q[rows, problem.log.actions], "q_target": np.sum(policy * q, axis=1)}
        greedy = np.argmax(policy, axis=1)
        est = evaluate_policy(problem.log, target_probs=problem.per_row(policy), target_actions=greedy,
                              n_boot=0, **kwargs)
        if not np.allclose(policy.max(axis=1), 1.0):
            est.pop("replay")  # replay scores a deterministic policy; this one is not
        for name, e in est.items():
            errors.setdefault(name, []).append(e.value - truth)
    return {name: {"bias": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                   "rmse": float(np.sqrt(np.mean(np.square(v)))), "replications": len(v)}
            for name, v in errors.items()}
