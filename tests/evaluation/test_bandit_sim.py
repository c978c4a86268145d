"""Bandit policies against a simulator whose reward probabilities are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mosaicrec.evaluation.bandit_sim import (DEFAULT_POLICIES, BanditEnvironment, emotify_environment, simulate,
                                             summarise, write_report)
from mosaicrec.ranking.bandits import features


def linear_world(seed: int = 0, n_items: int = 40, d: int = 4, c: int = 3) -> BanditEnvironment:
    """Reward probabilities the policies' features can express: sigmoid(4 · φ(x, a) · θ)."""
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n_items, d)) / np.sqrt(d)
    contexts = np.eye(c)[rng.integers(0, c, 200)]
    theta = rng.standard_normal((c + 1) * d)
    truth = np.array([1 / (1 + np.exp(-4 * features(items, x) @ theta)) for x in contexts])
    return BanditEnvironment(items, contexts, [np.arange(n_items)] * 200, truth)


def test_learning_policies_beat_random_and_regret_is_measured_against_the_truth():
    env = linear_world()
    runs = simulate(env, DEFAULT_POLICIES, rounds=1500, seed=0)
    final = {name: r["reward"][-1] for name, r in runs.items()}
    regret = {name: r["regret"][-1] for name, r in runs.items()}
    for name in ("linucb", "thompson", "epsilon-greedy (0.1)"):
        assert final[name] > 1.3 * final["random"], final
        assert regret[name] < 0.6 * regret["random"], regret
    assert all(np.all(np.diff(r["regret"]) >= -1e-12) for r in runs.values())  # regret never goes down
    # random play's expected regret: the mean gap between the best arm and a uniformly drawn one
    rng = np.random.default_rng(0)
    order = rng.integers(0, len(env.contexts), 1500)
    gap = (env.truth.max(axis=1) - env.truth.mean(axis=1))[order].sum()
    assert regret["random"] == pytest.approx(gap, rel=0.1)


def test_summary_and_report(tmp_path):
    env = linear_world(seed=1)
    curves = {}
    for seed in (0, 1):
        for name, run in simulate(env, {"random": None, "linucb": DEFAULT_POLICIES["linucb"]}, 400, seed=seed).items():
            curves.setdefault(name, []).append(run)
    rows = {r["policy"]: r for r in summarise(curves, last=100)}
    assert rows["random"]["vs_random"] == 1.0 and rows["linucb"]["vs_random"] > 1.0
    assert rows["linucb"]["like_rate"] == pytest.approx(np.mean([c["reward"][-1] / 400 for c in curves["linucb"]]))
    assert rows["linucb"]["late_like_rate"] == pytest.approx(
        np.mean([(c["reward"][-1] - c["reward"][299]) / 100 for c in curves["linucb"]]))
    table = write_report(curves, tmp_path, "sim", "test", 1.0)
    assert "| linucb |" in table and (tmp_path / "sim.png").stat().st_size > 0
    assert json.loads((tmp_path / "sim.json").read_text())["rows"][0]["policy"] == "random"


def test_the_emotify_simulator_follows_the_logged_like_rates():
    rng = np.random.default_rng(0)
    n = 4000
    items = np.arange(20).astype(str)
    genre = np.where(np.arange(20) < 10, "rock", "pop")
    item = rng.integers(0, 20, n)
    tongue = rng.choice(["English", "Dutch"], n)
    # item 3 is liked by English listeners only; every other item at 30%
    p = np.where(item == 3, np.where(tongue == "English", 0.9, 0.1), 0.3)
    responses = pd.DataFrame({"item_id": items[item], "genre": genre[item], "liked": (rng.random(n) < p).astype(float),
                              "age": "<25", "gender": "0", "tongue": tongue})
    env = emotify_environment(responses, rng.standard_normal((20, 12)), items, dims=4)
    english = env.contexts[:, -1] == 1  # columns: age bands, genders, then tongues sorted (Dutch, English)
    assert env.truth[english, 3].mean() > 0.8 and env.truth[~english, 3].mean() < 0.2
    assert abs(env.truth[:, 5].mean() - 0.3) < 0.05
    # a context is shown only its genre's items, drawn as often as the log has it
    assert all(set(a) in (set(range(10)), set(range(10, 20))) for a in env.arms)
    assert len(env.contexts) == n and abs(english.mean() - (tongue == "English").mean()) < 1e-9
    with pytest.raises(ValueError, match="without a vector"):
        emotify_environment(responses.assign(item_id="nope"), rng.standard_normal((20, 12)), items)


def test_bandit_run_config_is_the_shipped_file_and_refuses_bad_settings(tmp_path):
    from importlib.resources import files

    from mosaicrec.errors import ConfigError
    from mosaicrec.evaluation.bandit_sim import BanditRunConfig, load_bandit_config, run_seeds

    shipped = load_bandit_config(files("mosaicrec") / "configs" / "bandits.toml")
    assert shipped.policies == DEFAULT_POLICIES == BanditRunConfig().policies
    assert shipped.rounds == 5000 and shipped.seeds == [0, 1, 2]
    # a config's own policies are what run_seeds plays
    (tmp_path / "b.toml").write_text('rounds = 300\nseeds = [4]\n[policies]\nrandom = "random"\n'
                                     'wide = { policy = "linucb", alpha = 2.0 }\n')
    cfg = load_bandit_config(tmp_path / "b.toml")
    curves = run_seeds(linear_world(), cfg.seeds, cfg.rounds, cfg.policies)
    assert set(curves) == {"random", "wide"} and len(curves["wide"][0]["reward"]) == 300
    for text, where in (('[policies]\nx = { policy = "softmax" }', "policies.x"), ("rounds = 5", "rounds"),
                        ('name = "../../etc/x"', "name"), ("colour = 1", "colour"),
                        ('environment = "kuairand"', "environment")):
        (tmp_path / "bad.toml").write_text(text + "\n")
        with pytest.raises(ConfigError, match=rf"bad\.toml: {where}"):
            load_bandit_config(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text("rounds = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_bandit_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="no bandit config"):
        load_bandit_config(tmp_path / "none.toml")
