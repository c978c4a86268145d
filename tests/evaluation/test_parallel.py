"""Evaluation in parallel over users on a real local Ray cluster: the same lists and metrics as one process."""

import numpy as np
import pytest

from mosaicrec.data.splits import SplitConfig, split
from mosaicrec.data.synthetic import synthetic_log
from mosaicrec.evaluation.protocol import EvaluationConfig, evaluate_ranking, item_popularity
from mosaicrec.models import create

pytestmark = pytest.mark.xdist_group("ray")


def test_parallel_evaluation_gives_the_single_process_metrics(ray_cluster):
    x, vectors = synthetic_log(2_000, 400, 40_000, topics=10, seed=5)
    train, test = split(x, SplitConfig(test_fraction=0.2, seed=1))
    model = create("ease", {"reg": 50.0}).fit(train)
    kw = dict(exclude=train.binary, item_popularity=item_popularity(train), item_vectors=vectors)
    one = evaluate_ranking(model, test, config=EvaluationConfig(batch_size=300), **kw)
    many = evaluate_ranking(model, test, config=EvaluationConfig(batch_size=300, workers=2), **kw)
    assert one.metrics == many.metrics and one.metrics["ndcg@10"] > 0.05
    assert np.array_equal(one.users, many.users)
    for name, values in one.per_user.items():
        np.testing.assert_array_equal(values, many.per_user[name])
    # a scorer that is a closure (folding in users, say) travels too
    fold = evaluate_ranking(model, test, config=EvaluationConfig(workers=2, ks=[10], metrics=["recall"]),
                            score_fn=lambda rows: model.score(rows) * 2.0, exclude=train.binary)
    assert fold.metrics["recall@10"] == one.metrics["recall@10"]


def test_an_experiment_config_runs_on_ray_with_the_same_results(ray_cluster):
    """The same config, with ``workers`` set for ALS and for the evaluation, gives the same table."""
    from mosaicrec.config import ExperimentConfig
    from mosaicrec.evaluation.runner import run_experiment

    from mosaicrec.data.synthetic import synthetic_catalog

    data, _ = synthetic_catalog(n_users=800, n_items=300, n_events=30_000, seed=6)
    tables = []
    for workers in (0, 2):
        cfg = ExperimentConfig.model_validate({
            "name": "scale", "dataset": {"name": "movielens-100k"},
            "models": [{"name": "als", "params": {"factors": 8, "iterations": 3, "workers": workers,
                                                  "num_threads": 1}}],
            "evaluation": {"ks": [10], "metrics": ["recall", "ndcg"], "workers": workers}})
        result = run_experiment(data, cfg.split, cfg.models, cfg.evaluation, name=cfg.name)
        tables.append(result.rows[0].metrics)
    # float32 ALS: Ray workers and this process may run differently compiled machine code of one kernel (numba's
    # cache or a fresh compile), which differ in the last bit of a sum; the metrics agree to that rounding
    assert tables[0] == pytest.approx(tables[1], abs=1e-4) and tables[0]["recall@10"] > 0.05
