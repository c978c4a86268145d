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
