"""Linear contextual bandits on a simulated catalog whose true reward model is known."""

from __future__ import annotations

import numpy as np
import pytest

from mosaicrec.ranking.bandits import LinearBandit, features


def environment(seed: int = 0, n_items: int = 30, d: int = 4, c: int = 2):
    """Items with vectors; a context flips which items are good; reward ~ Bernoulli(sigmoid(3·θ·φ))."""
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n_items, d)) / np.sqrt(d)
    theta = rng.standard_normal(d * (c + 1))
    return rng, items, theta


def run(policy: str, rounds: int = 600, k: int = 1, seed: int = 0) -> np.ndarray:
    rng, items, theta = environment(seed)
    bandit = (LinearBandit(items.shape[1] * 3, {"policy": policy, "epsilon": 0.1, "alpha": 0.5}, seed=seed)
              if policy != "random" else None)
    rewards = []
    for _ in range(rounds):
        phi = features(items, rng.standard_normal(2))
        p = 1 / (1 + np.exp(-3 * phi @ theta))
        chosen = bandit.select(phi, k).items if policy != "random" else rng.choice(len(items), k, replace=False)
        r = (rng.random(k) < p[chosen]).astype(float)
        if policy != "random":
            bandit.update(phi[chosen], r)
        rewards.append(r.mean())
    return np.array(rewards)


@pytest.mark.parametrize("policy", ["epsilon-greedy", "linucb", "thompson"])
def test_each_policy_learns_to_beat_random_choice(policy):
    late = slice(300, None)
    gains = [run(policy, seed=s)[late].mean() - run("random", seed=s)[late].mean() for s in range(2)]
    assert min(gains) > 0.15, f"{policy}: reward over random {gains}"


def test_slates_learn_too():
    assert run("linucb", k=3)[300:].mean() > run("random", k=3)[300:].mean() + 0.1


def test_epsilon_greedy_propensities_are_the_shown_frequencies():
    rng, items, theta = environment()
    bandit = LinearBandit(items.shape[1] * 3, {"policy": "epsilon-greedy", "epsilon": 0.3})
    phi = features(items, [0.5, -1.0])
    bandit.update(phi, (phi @ theta > 0).astype(float))
    shown = np.zeros((len(items), 3))
    for _ in range(3000):
        slate = bandit.select(phi, 3)
        shown[slate.items, np.arange(3)] += 1
    expected = bandit.propensities(phi, 3)  # item × position
    np.testing.assert_allclose(expected.sum(axis=0), 1.0)  # each position holds one item
    np.testing.assert_allclose(shown / 3000, expected, atol=0.03)
    slate = bandit.select(phi, 3)
    np.testing.assert_allclose(slate.propensities, expected[slate.items, np.arange(3)])


def test_thompson_propensities_match_its_choices():
    rng, items, theta = environment()
    bandit = LinearBandit(items.shape[1] * 3, {"policy": "thompson", "propensity_samples": 100}, seed=1)
    phi = features(items, [1.0, 0.0])
    bandit.update(phi[:10], (phi[:10] @ theta > 0).astype(float))
    shown = np.zeros((len(items), 2))
    for _ in range(1500):
        shown[bandit.select(phi, 2).items, np.arange(2)] += 1
    bandit.config = bandit.config.model_copy(update={"propensity_samples": 20000})  # a precise estimate
    expected = bandit.propensities(phi, 2)  # item × position
    assert expected.max() - expected.min() > 0.3  # the posterior prefers some items: not a flat check
    np.testing.assert_allclose(shown / 1500, expected, atol=0.05)


def test_state_survives_a_round_trip_and_update_order_does_not_matter():
    rng, items, theta = environment()
    phi = features(items, [0.2, 0.7])
    r = (rng.random(len(items)) < 0.5).astype(float)
    a = LinearBandit(phi.shape[1], {"policy": "linucb"})
    a.update(phi[:15], r[:15])
    a.update(phi[15:], r[15:])
    b = LinearBandit(phi.shape[1], {"policy": "linucb"})
    order = rng.permutation(len(items))
    b.update(phi[order], r[order])
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-8, atol=1e-10)
    again = LinearBandit.from_state(a.state())
    assert again.config == a.config and again.n_updates == 30
    np.testing.assert_allclose(again.ucb(phi), a.ucb(phi))


def test_bad_inputs_are_refused():
    bandit = LinearBandit(6)
    with pytest.raises(ValueError, match="width 6"):
        bandit.select(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="k must be"):
        bandit.select(np.zeros((5, 6)), k=6)
    with pytest.raises(ValueError, match="finite rewards"):
        bandit.update(np.zeros((2, 6)), [1.0, np.nan])
    with pytest.raises(ValueError, match="finite"):
        features(np.ones((3, 2)), [np.inf])
    with pytest.raises(ValueError, match="d × d"):
        LinearBandit.from_state({**bandit.state(), "A": np.ones((2, 3))})
    with pytest.raises(ValueError):
        LinearBandit(6, {"policy": "magic"})
