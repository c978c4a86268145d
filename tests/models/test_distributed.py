"""ALS and BPR on Ray workers (a real local cluster): ALS is the single-process model, split; BPR by
parameter mixing reaches the single-process model's accuracy."""

import numpy as np
import pytest

from mosaicrec.data.splits import SplitConfig, split
from mosaicrec.data.synthetic import synthetic_catalog
from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking
from mosaicrec.models import create, load_model

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def data():
    dataset, _ = synthetic_catalog(n_users=500, n_items=300, n_events=25_000, seed=3)
    train, test = split(dataset.interactions, SplitConfig(test_fraction=0.2, seed=0))
    return train, test


def recall(model, train, test):
    cfg = EvaluationConfig(ks=[10], metrics=["recall"])
    return evaluate_ranking(model, test, exclude=train.binary, config=cfg).metrics["recall@10"]


@pytest.mark.parametrize("workers", [2, 3])
def test_als_on_workers_is_the_single_process_model(ray_cluster, data, workers, tmp_path):
    train, test = data
    params = {"factors": 16, "iterations": 4, "seed": 1}
    one = create("als", {**params, "num_threads": 1}).fit(train)
    many = create("als", {**params, "workers": workers}).fit(train)  # 3 workers share the cluster's 2 CPUs
    # the same arithmetic up to float32 rounding: numba's cached machine code and a fresh compile of the same
    # kernel can differ in the last bit of a sum (measured), and four ALS rounds carry that to ~1e-6 of a
    # factor's size, so the factors agree to 1e-5 of their largest and the lists up to near-ties
    for got, want in ((many.U_, one.U_), (many.V_, one.V_)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    users = np.arange(train.n_users)
    lists_many, lists_one = many.recommend(users, 10)[0], one.recommend(users, 10)[0]
    scores = one.score(users)
    differ = np.flatnonzero((lists_many != lists_one).any(axis=1))
    assert len(differ) <= 0.01 * len(users), len(differ)
    scale = np.abs(scores).max()
    for u in differ:  # a swap only between items whose scores tie to within the rounding
        np.testing.assert_allclose(scores[u, lists_many[u]], scores[u, lists_one[u]], rtol=0, atol=1e-4 * scale)
    assert [h["workers"] for h in many.history_] == [workers] * 4
    many.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").V_, many.V_)


def test_bpr_on_workers_reaches_the_single_process_accuracy(ray_cluster, data):
    train, test = data
    params = {"factors": 16, "iterations": 30, "learning_rate": 0.05, "seed": 0}
    one = recall(create("bpr", {**params, "num_threads": 1}).fit(train), train, test)
    mixed = create("bpr", {**params, "workers": 2, "syncs": 4}).fit(train)
    pop = recall(create("mostpop").fit(train), train, test)
    got = recall(mixed, train, test)
    assert got > pop * 1.2 and got >= 0.9 * one, (got, one, pop)
    assert mixed.history_[-1]["correct"] > 0.7  # samples ranked right before their update, late in training


def test_a_neural_model_on_ray_train_workers_takes_the_one_process_steps(ray_cluster):
    """VBPR with torch DDP on 2 Ray Train workers: each computes half of every batch and the gradients are
    averaged, so the weights, the early-stopping choice and the lists are the one-process model's."""
    dataset, content = synthetic_catalog(n_users=400, n_items=300, n_events=15_000, seed=3)
    train, test = split(dataset.interactions, SplitConfig(test_fraction=0.2, seed=0))
    params = {"epochs": 4, "early_stopping": 2, "init_iterations": 20, "threads": 1, "batch_size": 512}
    one = create("vbpr", params).fit(train, content=content)
    seen = []
    two = create("vbpr", {**params, "workers": 2})
    two.on_epoch = seen.append
    two.fit(train, content=content)
    assert two.best_epoch_ == one.best_epoch_
    np.testing.assert_allclose(two.V_, one.V_, atol=1e-3)
    assert recall(two, train, test) == pytest.approx(recall(one, train, test), abs=0.005)
    assert seen and all(r["workers"] == 2 for r in seen) and len(two.history_) == len(one.history_)
