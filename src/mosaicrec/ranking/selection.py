"""Selection: from ranked candidates to the list a person is shown, with the probability each item was
shown with (its propensity), which off-policy evaluation of a logged list needs.

Both selectors here are deterministic, so every shown item has propensity 1 under its policy; a stochastic
policy (exploration, :mod:`mosaicrec.serving.bandit`) returns its own probabilities in the same
:class:`~mosaicrec.ranking.lists.ItemList`.
"""

from __future__ import annotations

import numpy as np

from mosaicrec.ranking.lists import ItemList
from mosaicrec.ranking.rerank import mmr


def greedy(candidates: ItemList, k: int) -> ItemList:
    """The ``k`` best candidates in score order (candidates arrive best first)."""
    return candidates.head(k)


def mmr_select(candidates: ItemList, vectors: np.ndarray, k: int, lam: float) -> ItemList:
    """Maximal marginal relevance over the candidates' (L2-normalised) vectors at trade-off ``lam``."""
    chosen = mmr(candidates.items, candidates.scores, vectors, k, lam)
    position = {int(i): p for p, i in enumerate(candidates.items.tolist())}
    picked = candidates.take(np.array([position[i] for i in chosen.tolist()], np.int64))
    return picked.with_policy(f"{candidates.policy}+mmr(lambda={lam:g})")
