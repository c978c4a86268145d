"""Selection: from ranked candidates to the list a person is shown, with the probability each item was
shown with (its propensity), which off-policy evaluation of a logged list needs.

Both selectors here are deterministic, so every shown item has propensity 1 under its policy; a stochastic
policy (exploration) returns its own probabilities through the same :class:`Selection`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaicrec.ranking.rerank import mmr


@dataclass(frozen=True)
class Selection:
    """The shown list: item indices, their scores, and the probability each was shown at its position."""

    items: np.ndarray
    scores: np.ndarray
    propensities: np.ndarray
    policy: str

    def __len__(self) -> int:
        return len(self.items)


def greedy(ids: np.ndarray, scores: np.ndarray, k: int, policy: str = "greedy") -> Selection:
    """The ``k`` best candidates in score order (candidates arrive best first)."""
    ids, scores = ids[:k], scores[:k]
    return Selection(ids, scores, np.ones(len(ids)), policy)


def mmr_select(ids: np.ndarray, scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> Selection:
    """Maximal marginal relevance over the candidates' (L2-normalised) vectors at trade-off ``lam``."""
    chosen = mmr(ids, scores, vectors, k, lam)
    score_of = dict(zip(ids.tolist(), scores.tolist()))
    return Selection(chosen, np.array([score_of[i] for i in chosen.tolist()], np.float32), np.ones(len(chosen)),
                     f"mmr(lambda={lam:g})")
