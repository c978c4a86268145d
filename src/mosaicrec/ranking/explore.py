"""Exploration over the model's own scores: lists drawn at random, each item logged with the probability
that the policy shows it *at its position*, so that the log can measure other policies (off-policy
evaluation of slates, :mod:`mosaicrec.evaluation.slates`).

Two logging policies, both over the model's best ``candidates`` allowed items (0: every allowed item, at
most :data:`MAX_CANDIDATES`: each list's candidates go to the log with it):

* ``epsilon-greedy``: the greedy list with probability 1 − ε, else a uniformly random ordered draw of k
  candidates. The probability of item a at position j is (1 − ε)·[a is the greedy list's j-th] + ε / C,
  exactly; every candidate can appear at every position.
* ``plackett-luce``: k draws without replacement, each candidate in proportion to exp(z / temperature), z
  its score standardised over the candidates (a low temperature stays near the greedy list, a high one near
  uniform). Its position marginals have no closed form: they are counted over ``samples`` Monte Carlo
  draws (Gumbel top-k), floored at 1 / (2·samples) so that a shown item's weight stays finite.

Unlike the learning bandit (:mod:`mosaicrec.serving.bandit`) these need no content vectors and learn
nothing: they are the randomisation a team adds to serve a log its next models can be measured on. Each
draw is seeded by the request id, so a list can be drawn again exactly. Deterministic selection (greedy,
MMR, LinUCB) is logged with propensity 1 and no draw: a log of those alone supports no other policy.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mosaicrec.ranking.lists import Draw, ItemList

ExplorePolicy = Literal["epsilon-greedy", "plackett-luce"]
#: the most candidates a list is drawn from: each exploring list logs its candidates (their ids and scores),
#: so this bounds what one request can write to the log, and the sort that finds them
MAX_CANDIDATES = 10_000
#: Plackett–Luce: the most Gumbel draws (samples × candidates) one request spends on its position
#: probabilities (~20 ms); past it, fewer samples (the floor 1 / (2·samples) rises with it)
MAX_DRAWS = 2_000_000


class ExploreConfig(BaseModel):
    """Which requests explore, and how."""

    model_config = ConfigDict(extra="forbid")

    policy: ExplorePolicy = "epsilon-greedy"
    epsilon: float = Field(0.1, gt=0, le=1, description="epsilon-greedy: share of lists drawn at random")
    temperature: float = Field(1.0, ge=0.01, le=100, description="plackett-luce: softmax temperature over "
                                                                  "standardised scores")
    candidates: int = Field(100, ge=0, le=MAX_CANDIDATES, description="the model's best allowed items drawn "
                                                                      "from (0: every allowed item, at most "
                                                                      f"{MAX_CANDIDATES:,})")
    share: float = Field(1.0, ge=0, le=1, description="share of requests that explore (by request id)")
    scenarios: list[str] | None = Field(None, max_length=1000, description="only these scenarios; None: all")
    samples: int = Field(1000, ge=100, le=100_000, description="plackett-luce: Monte Carlo draws for the "
                                                               "position probabilities")
    seed: int = 0


def in_share(request_id: str, share: float, salt: str = "") -> bool:
    """Whether a request falls in a ``share`` of traffic, by a hash of its id (the same answer every time)."""
    if share >= 1:
        return True
    h = int.from_bytes(hashlib.blake2b((salt + request_id).encode(), digest_size=8).digest(), "big")
    return h / 2**64 < share


def _rng(seed: int, request_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8)
                                                       .digest(), "big")])


def standardised(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    if not np.isfinite(s).any():
        return np.zeros(len(s))
    s = np.nan_to_num(s, nan=np.nanmin(s))
    sd = s.std()
    return (s - s.mean()) / sd if sd > 0 else np.zeros(len(s))


def epsilon_greedy_marginals(epsilon: float, n_candidates: int, greedy: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``len(idx) × len(greedy)``: the probability that ε-greedy over ``n_candidates`` (its list ``greedy``
    with 1 − ε, else a uniformly random ordered draw) shows candidate ``idx[i]`` at position ``j``:
    (1 − ε)·[greedy_j = idx_i] + ε / C."""
    return (1 - epsilon) * (np.asarray(idx)[:, None] == np.asarray(greedy)[None, :]) + epsilon / n_candidates


def count_positions(scores: np.ndarray, k: int, out: np.ndarray) -> None:
    """Add to ``out`` (n × k) where each row of ``scores`` (draws × n) puts its top ``k`` items, by position:
    the Monte Carlo count behind Plackett–Luce's and Thompson sampling's position probabilities."""
    n = scores.shape[1]
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    np.add.at(out, (np.take_along_axis(top, order, axis=1).ravel(), np.tile(np.arange(k), len(scores))), 1)


def position_marginals(draw: Draw, k: int, samples: int = 4000, seed: int = 0) -> np.ndarray:
    """``C × k``: the probability that the policy that made ``draw`` shows each candidate at each of the
    first ``k`` positions (ε-greedy exactly; Plackett–Luce by ``samples`` seeded Monte Carlo draws,
    floored at 1 / (2·samples)). Thompson sampling's are not recoverable from the log: a ValueError."""
    c = len(draw.candidates)
    k = min(k, c)
    if draw.kind == "epsilon-greedy":
        where = {int(x): p for p, x in enumerate(draw.candidates.tolist())}
        greedy = np.array([where.get(int(item), -1) for item in draw.greedy[:k].tolist()], np.int64)
        return epsilon_greedy_marginals(draw.epsilon, c, greedy, np.arange(c))
    if draw.kind == "plackett-luce":
        logits = standardised(draw.scores) / draw.temperature
        rng = np.random.default_rng(seed)
        out = np.zeros((c, k))
        for start in range(0, samples, 500):  # bounded memory: 500 × C at a time
            m = min(500, samples - start)
            count_positions(logits[None, :] + rng.gumbel(size=(m, c)), k, out)
        return np.maximum(out / samples, 1 / (2 * samples))
    raise ValueError(f"the position probabilities of a {draw.kind!r} draw are not kept in the log")


class Exploration:
    """An exploring selection step for the pipeline (see the module); thread-safe (no shared state)."""

    needs_content = False

    def __init__(self, config: ExploreConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return f"explore:{self.config.policy}"

    @property
    def n_candidates(self) -> int:
        return self.config.candidates or MAX_CANDIDATES  # 0: every allowed item (up to the bound)

    def serves(self, request_id: str, scenario: str | None) -> bool:
        cfg = self.config
        if cfg.scenarios is not None and scenario not in cfg.scenarios:
            return False
        return in_share(request_id, cfg.share, "explore")

    def choose(self, request_id: str, user_id: str, candidates: ItemList, item_vectors: np.ndarray | None,
               profile: np.ndarray | None, k: int) -> ItemList:
        """Draw a list of ``k`` from the candidates (best first by the model) with each item's propensity at
        its position, and the draw itself (for the log)."""
        cfg = self.config
        c = len(candidates)
        k = min(k, c)
        rng = _rng(cfg.seed, request_id)
        positions = np.arange(k)
        if cfg.policy == "epsilon-greedy":
            explored = bool(rng.random() < cfg.epsilon)
            chosen = rng.choice(c, k, replace=False) if explored else positions
            draw = Draw("epsilon-greedy", candidates.items, candidates.scores, candidates.items[:k],
                        epsilon=cfg.epsilon, explored=explored)
            props = epsilon_greedy_marginals(cfg.epsilon, c, positions, chosen)[positions, positions]
        else:
            draw = Draw("plackett-luce", candidates.items, candidates.scores, candidates.items[:k],
                        temperature=cfg.temperature)
            g = standardised(candidates.scores) / cfg.temperature + rng.gumbel(size=c)
            chosen = np.argsort(-g, kind="stable")[:k]
            samples = max(100, min(cfg.samples, MAX_DRAWS // c))
            props = position_marginals(draw, k, samples, seed=int(rng.integers(2**32)))[chosen, positions]
        return ItemList(candidates.items[chosen], candidates.scores[chosen], props, self.name, draw=draw)
