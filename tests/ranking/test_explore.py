"""Exploration over the model's own scores: each list is drawn at random and every shown item carries its
probability at its position, which must be the frequency with which the policy really shows it there."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mosaicrec.ranking.explore import ExploreConfig, Exploration, in_share, position_marginals
from mosaicrec.ranking.lists import ItemList

CANDIDATES = ItemList(np.arange(100, 112), np.linspace(3.0, 0.5, 12))


def _frequencies(explorer: Exploration, k: int, n: int) -> np.ndarray:
    counts = np.zeros((len(CANDIDATES), k))
    for t in range(n):
        got = explorer.choose(f"r{t}", "u", CANDIDATES, None, None, k)
        counts[got.items - 100, np.arange(k)] += 1
    return counts / n


def test_epsilon_greedy_logs_each_items_exact_probability_at_its_position():
    explorer = Exploration(ExploreConfig(policy="epsilon-greedy", epsilon=0.3, candidates=12))
    got = explorer.choose("r1", "u", CANDIDATES, None, None, 4)
    assert got.draw is not None and got.draw.kind == "epsilon-greedy" and len(got.draw.candidates) == 12
    marginals = position_marginals(got.draw, 4)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0)  # each position holds one item
    np.testing.assert_allclose(got.propensities, marginals[got.items - 100, np.arange(4)])
    np.testing.assert_allclose(_frequencies(explorer, 4, 4000), marginals, atol=0.03)
    again = explorer.choose("r1", "u", CANDIDATES, None, None, 4)  # a list is drawn again exactly from its id
    assert np.array_equal(again.items, got.items)


def test_plackett_luce_propensities_are_the_shown_frequencies_and_temperature_spreads_them():
    cold = Exploration(ExploreConfig(policy="plackett-luce", temperature=0.3, candidates=12, samples=4000))
    got = cold.choose("r1", "u", CANDIDATES, None, None, 3)
    marginals = position_marginals(got.draw, 3, 20_000)
    np.testing.assert_allclose(_frequencies(cold, 3, 3000), marginals, atol=0.03)
    np.testing.assert_allclose(got.propensities, marginals[got.items - 100, np.arange(3)], rtol=0.15, atol=0.01)
    hot = position_marginals(Exploration(ExploreConfig(policy="plackett-luce", temperature=5.0))
                             .choose("r1", "u", CANDIDATES, None, None, 3).draw, 3, 20_000)
    # a low temperature keeps near the greedy list, a high one near uniform (1/12 everywhere)
    assert marginals[0, 0] > 0.6 and abs(hot[0, 0] - 1 / 12) < 0.06
    assert (marginals > 0).all()  # every candidate may appear at every position: support for any target


def test_share_and_bad_settings():
    ids = [f"r{i}" for i in range(4000)]
    assert abs(np.mean([in_share(r, 0.25, "explore") for r in ids]) - 0.25) < 0.03
    explorer = Exploration(ExploreConfig(share=0.0))
    assert not any(explorer.serves(r, None) for r in ids[:100])
    for bad in ({"epsilon": 0}, {"epsilon": 1.5}, {"temperature": 0}, {"policy": "magic"}, {"candidates": -1},
                {"candidates": 10_001},
                {"shares": 1}):
        with pytest.raises(ValidationError):
            ExploreConfig(**bad)
