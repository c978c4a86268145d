"""Off-policy estimators on simulated logs whose true policy value is known."""

from __future__ import annotations

import numpy as np
import pytest

from mosaicrec.evaluation.ope import (BanditLog, bias_variance, epsilon_greedy_policy, evaluate_policy, ips,
                                      synthetic_bandit)


def _greedy(problem):
    return epsilon_greedy_policy(problem.mean, 0.0)


def _within(stats: dict[str, float], sigmas: float = 3.0) -> bool:
    """The mean error is within ``sigmas`` standard errors of zero: no detectable bias."""
    return abs(stats["bias"]) < sigmas * stats["std"] / np.sqrt(stats["replications"])


def test_with_a_uniform_logger_every_estimator_finds_the_true_value():
    table = bias_variance(lambda s: synthetic_bandit(1000, 8, 4, logging="uniform", seed=s), _greedy, 80,
                          reward_model=lambda p: p.mean)
    assert set(table) == {"replay", "ips", "snips", "dr"}
    for name, stats in table.items():
        assert _within(stats), f"{name}: bias {stats['bias']:.4f} ± {stats['std']:.4f}"
    assert table["snips"]["std"] < table["ips"]["std"] / 2  # self-normalising tames the 1/p weights


def test_with_a_skewed_logger_replay_is_biased_and_the_weighted_estimators_are_not():
    table = bias_variance(lambda s: synthetic_bandit(1000, 8, 4, logging="softmax", seed=s),
                          lambda p: epsilon_greedy_policy(p.mean, 0.1), 80, reward_model=lambda p: p.mean)
    assert "replay" not in table  # a stochastic target has no single action to replay
    for name in ("ips", "dr"):
        assert _within(table[name]), f"{name}: bias {table[name]['bias']:.4f}"
    assert table["dr"]["std"] < table["ips"]["std"]  # a good reward model removes most of the variance
    greedy = bias_variance(lambda s: synthetic_bandit(1000, 8, 4, logging="softmax", seed=s), _greedy, 80)
    # the logger shows good actions more often, and replay keeps exactly those matches: biased upwards
    assert greedy["replay"]["bias"] > 5 * greedy["replay"]["std"] / np.sqrt(80)


def test_bootstrap_intervals_cover_the_true_value_about_as_often_as_they_claim():
    covered = []
    for seed in range(40):
        p = synthetic_bandit(800, 6, 4, logging="softmax", seed=seed)
        policy = epsilon_greedy_policy(p.mean, 0.1)
        rows = np.arange(p.log.n)
        est = evaluate_policy(p.log, target_probs=p.per_row(policy), q_logged=p.mean[rows, p.log.actions],
                              q_target=np.sum(policy * p.mean, axis=1), n_boot=100, seed=seed)
        truth = p.true_value(policy)
        covered.append([est[n].low <= truth <= est[n].high for n in ("snips", "dr")])
        assert all(est[n].low <= est[n].value <= est[n].high for n in est)
    assert np.mean(covered, axis=0).min() >= 0.85  # nominal 95%


def test_a_slates_rows_are_resampled_together():
    # every round shows two items, one rewarded: any resample of whole rounds has mean reward exactly 1/2
    n = 200
    log = BanditLog(actions=np.tile([0, 1], n), rewards=np.tile([1.0, 0.0], n), propensities=np.full(2 * n, 0.5),
                    rounds=np.repeat(np.arange(n), 2))
    target = np.full(2 * n, 0.5)
    grouped = evaluate_policy(log, target_probs=target, n_boot=50)["ips"]
    assert grouped.value == pytest.approx(0.5) and grouped.low == pytest.approx(0.5) == grouped.high
    loose = evaluate_policy(BanditLog(log.actions, log.rewards, log.propensities), target_probs=target, n_boot=50)
    assert loose["ips"].high - loose["ips"].low > 0.05


def test_bad_logs_and_inputs_are_refused_naming_the_row():
    with pytest.raises(ValueError, match="row 1"):
        BanditLog(np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="row 0"):
        BanditLog(np.array([0]), np.array([1.0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="reward of row 1"):
        BanditLog(np.array([0, 1]), np.array([1.0, np.inf]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="rewards has 1 rows"):
        BanditLog(np.array([0, 1]), np.array([1.0]), np.array([0.5, 0.5]))
    log = BanditLog(np.array([0, 1]), np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="one target probability per logged row"):
        ips(log, np.array([0.5]))
    with pytest.raises(ValueError, match="unknown estimator"):
        evaluate_policy(log, target_probs=np.array([0.5, 0.5]), estimators=("magic",))
