"""The slate estimators against brute force and a known truth: the pseudo-inverse's closed form equals the
pseudo-inverse of the logger's joint slot matrix and is unbiased; the position-based model's weights are
unbiased where examination falls with position; bootstrap intervals and effective sample sizes; and the
position estimators equal Open Bandit Pipeline's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mosaicrec.evaluation.slates import dr, ess, estimate, ips, pbm_weights, pi_weights, snips


def _slates(c: int, l: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(c), l))


@pytest.mark.parametrize("c,l,eps", [(5, 3, 0.4), (4, 4, 0.7), (6, 2, 1.0)])
def test_the_pseudo_inverse_closed_form_is_the_pseudo_inverse_and_unbiased(c, l, eps):
    slates = _slates(c, l)
    greedy = np.array(slates[len(slates) // 3])
    probs = np.array([eps / len(slates) + (1 - eps) * (s == tuple(greedy)) for s in slates])

    def onehot(s):
        m = np.zeros((l, c))
        m[np.arange(l), list(s)] = 1
        return m.ravel()

    gamma = sum(p * np.outer(onehot(s), onehot(s)) for p, s in zip(probs, slates))
    pinv = np.linalg.pinv(gamma)
    rng = np.random.default_rng(0)
    phi = rng.random((l, c))  # an additive slate reward: the sum of its slots' values
    for target in (np.array(slates[1]), np.array(slates[-1]), greedy):
        for s in slates[:: max(1, len(slates) // 15)]:
            assert pi_weights(c, eps, greedy, np.array(s), target) == pytest.approx(onehot(target) @ pinv @ onehot(s),
                                                                                  abs=1e-9)
        expected = sum(p * phi[np.arange(l), list(s)].sum() * pi_weights(c, eps, greedy, np.array(s), target)
                       for p, s in zip(probs, slates))
        assert expected == pytest.approx(phi[np.arange(l), target].sum())
    assert np.isnan(pi_weights(c, eps, greedy, greedy, np.r_[greedy[:-1], -1]))  # an item outside: no support
    assert pi_weights(c, 0.0, greedy, greedy, greedy) == 1.0 and np.isnan(pi_weights(c, 0.0, greedy, greedy,
                                                                                     np.array(slates[1])))


def _pbm_logs(rounds: int, seed: int, c: int = 8, l: int = 3, eps: float = 0.5):
    """ε-greedy slates of l over c items; a click at position j with θ_j · ρ(item)."""
    rng = np.random.default_rng(seed)
    rho = np.linspace(0.9, 0.1, c)
    theta = np.array([1.0, 0.6, 0.3])
    greedy = np.array([3, 0, 5])
    target = np.array([0, 1, 2])
    rows = []
    for t in range(rounds):
        s = rng.choice(c, l, replace=False) if rng.random() < eps else greedy
        r = (rng.random(l) < theta * rho[s]).astype(float)
        rows.append((s, r))
    mu = lambda a: eps / c + (1 - eps) * (greedy == a)  # noqa: E731  (the logger's position probabilities)
    truth = float(np.mean(theta * rho[target]))
    return rows, mu, theta, target, truth


def test_position_based_weights_are_unbiased_and_credit_an_item_wherever_it_was_shown():
    estimates = {"ips": [], "pbm": []}
    for rep in range(60):
        rows, mu, theta, target, truth = _pbm_logs(400, rep)
        items = np.concatenate([s for s, _ in rows])
        rewards = np.concatenate([r for _, r in rows])
        positions = np.tile(np.arange(3), len(rows))
        w_pos = (target[positions] == items) / np.array([mu(a)[j] for a, j in zip(items, positions)])
        pi_exp = (items[:, None] == target[None, :]).astype(float)
        mu_exp = np.array([mu(a) for a in items])
        estimates["ips"].append(ips(rewards, w_pos))
        estimates["pbm"].append(ips(rewards, pbm_weights(pi_exp, mu_exp, theta)))
    for name, values in estimates.items():
        assert abs(np.mean(values) - truth) < 3 * np.std(values) / np.sqrt(len(values)) + 0.005, (name, truth)
    assert np.std(estimates["pbm"]) < np.std(estimates["ips"])  # it uses more of the log


def test_estimate_gives_intervals_over_rounds_and_effective_sample_sizes():
    rng = np.random.default_rng(1)
    rounds = np.repeat(np.arange(500), 4)
    rewards = (rng.random(2000) < 0.3).astype(float)
    w = np.ones(2000)
    got = estimate(rounds, rewards, {"position": w}, n_boot=300)
    assert got["ips"].value == pytest.approx(rewards.mean()) and got["ips"].ess == pytest.approx(2000)
    assert got["ips"].low < 0.3 < got["ips"].high and got["ips"].high - got["ips"].low < 0.06
    assert ess(np.r_[100.0, np.zeros(99)]) == pytest.approx(1.0) and ess(np.zeros(3)) == 0.0
    assert snips(rewards, 2 * w) == pytest.approx(rewards.mean())
    assert dr(rewards, w, rewards, np.zeros(2000)) == pytest.approx(0.0)  # a perfect reward model: no correction
    with pytest.raises(ValueError):
        estimate(rounds, rewards, {"position": w}, alpha=2)


def test_position_estimators_equal_open_bandit_pipelines():
    obp = pytest.importorskip("obp.ope", reason="Open Bandit Pipeline is installed by `make setup`")
    rng = np.random.default_rng(2)
    n, actions, positions = 3000, 6, 3
    action = rng.integers(0, actions, n)
    position = rng.integers(0, positions, n)
    pscore = rng.uniform(0.1, 0.9, n)
    reward = (rng.random(n) < 0.4).astype(float)
    pi = rng.dirichlet(np.ones(actions), (n, positions)).transpose(0, 2, 1)  # n × actions × positions
    q = rng.random((n, actions, positions))
    rows = np.arange(n)
    w = pi[rows, action, position] / pscore
    q_target = np.sum(pi[rows, :, position] * q[rows, :, position], axis=1)
    kw = {"reward": reward, "action": action, "position": position, "pscore": pscore, "action_dist": pi}
    assert ips(reward, w) == pytest.approx(obp.InverseProbabilityWeighting().estimate_policy_value(**kw), abs=1e-9)
    assert snips(reward, w) == pytest.approx(
        obp.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw), abs=1e-9)
    assert dr(reward, w, q[rows, action, position], q_target) == pytest.approx(
        obp.DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q), abs=1e-9)
