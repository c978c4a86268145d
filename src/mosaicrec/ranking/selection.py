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


#: the most items MMR picks, and the most candidates it picks them from: a diverse list's cost is bounded
#: before it starts (at most ``MMR_PICKS`` products of ``MMR_POOL`` vectors), whatever ``k`` is asked
MMR_PICKS, MMR_POOL = 100, 500


def mmr_bounds(k: int) -> tuple[int, int]:
    """A diverse list of ``k``: how many items MMR picks, and from how many of the best candidates."""
    picks = min(k, MMR_PICKS)
    return picks, min(max(5 * picks, 50), MMR_POOL)


def mmr_pool(k: int) -> int:
    """How many candidates a diverse list of ``k`` needs: the MMR pool, and ``k`` for the tail."""
    return max(k, mmr_bounds(k)[1])


def mmr_select(candidates: ItemList, vectors: np.ndarray, k: int, lam: float) -> ItemList:
    """Maximal marginal relevance over the candidates' (L2-normalised) vectors at trade-off ``lam``: the
    first ``min(k, MMR_PICKS)`` items by MMR from the best ``MMR_POOL`` candidates, the rest of a longer
    list in score order (a list's head is what a person sees; its tail pays for no more diversity)."""
    picks, size = mmr_bounds(k)
    pool = candidates.head(size)
    chosen = mmr(pool.items, pool.scores, vectors, picks, lam)
    position = {int(i): p for p, i in enumerate(candidates.items.tolist())}
    head = [position[i] for i in chosen.tolist()]
    taken = set(head)
    tail = [p for p in range(len(candidates)) if p not in taken][:k - len(head)]
    picked = candidates.take(np.array(head + tail, np.int64))
    return picked.with_policy(f"{candidates.policy}+mmr(lambda={lam:g})")
