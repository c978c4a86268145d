"""Reasons by the model's own scores: leave-one-out contributions and the fidelity of cited reasons."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mosaicrec.models import create
from mosaicrec.models.query import Query
from mosaicrec.ranking.reasons import cite_by_model, contributions, fidelity, leave_one_out_scores
from tests.conftest import planted


def test_leave_one_out_rows_are_the_model_scoring_the_history_without_each_item():
    x = planted(n_users=60, n_items=40, per_user=8)
    model = create("ease", {"reg": 5.0}).fit(x)
    hist = np.array([3, 7, 12, 30])
    loo = leave_one_out_scores(model, hist, x.n_items)
    assert loo.shape == (5, x.n_items)
    for j in range(len(hist)):
        rest = np.delete(hist, j)
        alone = model.score(Query(history=sp.csr_matrix((np.ones(len(rest)), (np.zeros(len(rest)), rest)),
                                                              shape=(1, x.n_items)), exclude_seen=False))[0]
        np.testing.assert_allclose(loo[1 + j], alone, rtol=1e-5, atol=1e-6)
    # EASE is linear in the history (x · B): the contributions of its items add up to the score
    items = np.array([0, 5, 20])
    full = model.score(Query(history=sp.csr_matrix((np.ones(len(hist)), (np.zeros(len(hist)), hist)),
                                                         shape=(1, x.n_items)), exclude_seen=False))[0]
    np.testing.assert_allclose(loo[0], full, rtol=1e-5, atol=1e-6)
    c = contributions(loo, items)
    assert c.shape == (3, 4)
    np.testing.assert_allclose(c.sum(axis=1), full[items], rtol=1e-4, atol=1e-5)
    best = cite_by_model(loo, items)
    assert all(b == -1 or c[k, b] == c[k].max() for k, b in enumerate(best))


def test_reasons_cited_by_the_model_are_true_more_often_than_random_ones():
    x = planted(n_users=80, n_items=60, n_groups=3, per_user=10)
    rng = np.random.default_rng(0)
    # histories mixing two groups: some history items carry a recommendation, others do not
    histories = [np.concatenate([rng.choice(20, 6, replace=False), 20 + rng.choice(20, 2, replace=False)])
                 for _ in range(30)]
    citers = {"model": lambda h, items, loo: cite_by_model(loo, items),
              "random": lambda h, items, loo: rng.integers(0, len(h), len(items))}
    for name, params in (("ease", {"reg": 5.0}), ("als", {"factors": 8, "iterations": 10})):
        seen: list[tuple[str, np.ndarray, np.ndarray]] = []
        got = fidelity(create(name, params).fit(x), histories, x.n_items, 5, citers,
                       on_cited=lambda how, items, cited: seen.append((how, items, cited)))
        model_pairs = [(i, c) for how, items, cited in seen if how == "model" for i, c in zip(items, cited)]
        assert len(model_pairs) == round(got["model"]["cited"] * got["model"]["pairs"])
        # the model's reason for an item is, nearly always, a like of the item's own group
        assert np.mean([(i // 20) == (c // 20) for i, c in model_pairs]) > 0.9
        assert got["model"]["score"] == 1.0 and got["model"]["cited"] > 0.9, (name, got)
        assert got["random"]["score"] < 0.9 and got["model"]["rank"] > got["random"]["rank"], (name, got)
        assert got["model"]["pairs"] == 30 * 5
