import json

import numpy as np
import pytest

from mosaicrec.data import Interactions, SplitConfig, random_holdout
from mosaicrec.evaluation import EvaluationConfig, evaluate_ranking, item_popularity, run_experiment
from mosaicrec.evaluation.report import write_reports
from mosaicrec.models import create
from mosaicrec.models.base import BaseRecommender
from mosaicrec.models.registry import ModelSpec
from mosaicrec.models.context import ScenarioPopConfig
from tests.conftest import planted


class Oracle(BaseRecommender):
    """Knows the test set: must reach perfect recall when K ≥ the number of relevant items."""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def _fit(self, train):
        pass

    def _scores(self, query):
        return self.truth[query.users].toarray().astype(np.float32)


def test_oracle_scores_perfectly_and_training_items_are_excluded():
    x = planted()
    train, test = random_holdout(x, 0.25, seed=0)
    oracle = Oracle(test.binary).fit(train)
    res = evaluate_ranking(oracle, test, exclude=train.binary, config=EvaluationConfig(ks=[3, 10]))
    assert res.metrics["recall@3"] == pytest.approx(1.0)  # 3 relevant per user
    assert res.metrics["ndcg@10"] == pytest.approx(1.0)
    assert res.metrics["precision@10"] == pytest.approx(0.3)
    assert len(res.users) == x.n_users


def test_an_item_in_train_never_counts_as_a_hit():
    # the test item is also in train: excluded, so it cannot be recommended
    train = Interactions.from_arrays([0, 0], [0, 1], n_items=3)
    test = Interactions.from_arrays([0], [0], n_items=3, n_users=1)
    model = Oracle(test.binary).fit(train)
    res = evaluate_ranking(model, test, exclude=train.binary, config=EvaluationConfig(ks=[2]))
    assert res.metrics["hitrate@2"] == 0.0


def test_popularity_and_novelty_are_consistent():
    x = planted()
    train, test = random_holdout(x, 0.25, seed=0)
    pop = item_popularity(train)
    model = create("mostpop").fit(train)
    res = evaluate_ranking(model, test, exclude=train.binary, item_popularity=pop)
    assert 0 < res.metrics["novelty@10"] < 10
    assert res.metrics["coverage@5"] <= res.metrics["coverage@20"]


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        EvaluationConfig(metrics=["auc"])


def test_runner_writes_json_markdown_and_plot(movielens, tmp_path):
    specs = [ModelSpec(name="mostpop"), ModelSpec(name="ease", params={"reg": 300.0}),
             ModelSpec(name="biasedmf", params={"epochs": 3})]
    result = run_experiment(movielens, SplitConfig(rating_threshold=4, seed=1), specs,
                            EvaluationConfig(ks=[10]), name="t")
    by = {r.label: r for r in result.rows}
    # on MovieLens-100K, EASE is far more accurate than popularity; biased MF predicts ratings
    assert by["ease"].metrics["ndcg@10"] > by["mostpop"].metrics["ndcg@10"] + 0.1
    assert 0.8 < by["biasedmf"].metrics["rmse"] < 1.2 and "rmse" not in by["ease"].metrics
    out = write_reports(result, tmp_path / "report")
    data = json.loads((out / "results.json").read_text())
    assert [m["label"] for m in data["models"]] == ["mostpop", "ease", "biasedmf"]
    assert "| ease |" in (out / "report.md").read_text()
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mmr_tradeoff_curve_trades_accuracy_for_diversity(tmp_path):
    import pandas as pd

    from mosaicrec.data.schema import Dataset
    from mosaicrec.data.splits import SplitConfig
    from mosaicrec.evaluation.protocol import EvaluationConfig
    from mosaicrec.evaluation.report import write_reports
    from mosaicrec.evaluation.runner import run_experiment
    from mosaicrec.models.registry import ModelSpec
    from tests.conftest import planted, planted_content

    x = planted(per_user=12)
    items = pd.DataFrame({"item_id": x.item_ids, "title": x.item_ids, "attributes": [{} for _ in x.item_ids]})
    users = pd.DataFrame({"user_id": x.user_ids, "attributes": [{} for _ in x.user_ids]})
    result = run_experiment(Dataset("planted", x, items, users), SplitConfig(seed=0),
                            [ModelSpec(name="ease", params={"reg": 10.0})],
                            EvaluationConfig(mmr_lambdas=[1.0, 0.2]), content=planted_content(x))
    plain, diverse = result.rows[0].tradeoff
    assert plain["lambda"] == 1.0 and diverse["diversity@10"] > plain["diversity@10"]
    assert diverse["ndcg@10"] < plain["ndcg@10"]
    assert abs(plain["ndcg@10"] - result.rows[0].metrics["ndcg@10"]) < 1e-6  # λ = 1 is the plain ranking
    out = write_reports(result, tmp_path / "r")
    assert (out / "tradeoff.png").stat().st_size > 1000 and "trade-off" in (out / "report.md").read_text()


class ContextOracle(BaseRecommender):
    """Ranks item 1 first in context "a" and item 2 first in "b"; without a context, item 1 (a tie would be
    broken at random by the evaluation)."""

    Config = ScenarioPopConfig  # only its ``context`` field is read
    uses_context = True

    def _fit(self, train):
        self.contexts_ = np.array(["a", "b"], dtype=object)

    def _scores(self, query):
        s = np.zeros((len(query), 4), np.float32)
        codes = self.query_codes(query)
        s[codes == 1, 1] = s[codes == 2, 2] = 1.0
        s[codes == 0, 1] = 0.5
        return s


def test_context_ranking_makes_one_list_per_user_and_context():
    from dataclasses import replace

    train = replace(Interactions.from_arrays([0, 1], [0, 0], n_users=3, n_items=4),
                    context={"scenario": np.array(["a", "b"], dtype=object)})
    # user 0 took item 1 in "a" and item 2 in "b"; user 1 took item 2 in "b"; user 2 has no training events
    test = replace(Interactions.from_arrays([0, 0, 1, 2], [1, 2, 2, 1], n_users=3, n_items=4),
                   context={"scenario": np.array(["a", "b", "b", "a"], dtype=object)})
    model = ContextOracle().fit(train)
    cfg = EvaluationConfig(ks=[1], metrics=["hitrate", "ndcg"])
    result = evaluate_ranking(model, test, exclude=train.binary, config=cfg, context="scenario")
    assert sorted(zip(result.users.tolist(), result.contexts.tolist())) == [(0, "a"), (0, "b"), (1, "b")]
    assert result.metrics["hitrate@1"] == 1.0
    assert result.by_context == {"b": {"lists": 2, "hitrate@1": 1.0, "ndcg@1": 1.0},
                                 "a": {"lists": 1, "hitrate@1": 1.0, "ndcg@1": 1.0}}
    # the same lists ranked without the context: one order for both of user 0's lists, so one miss
    plain = evaluate_ranking(model, test, exclude=train.binary, config=cfg)
    assert plain.metrics["hitrate@1"] < 1.0
    with pytest.raises(Exception, match="not an event-context column"):
        evaluate_ranking(model, test, exclude=train.binary, config=cfg, context="device")


def test_scenario_models_win_the_kuairand_scenario_experiment(tmp_path):
    from tests.conftest import SHARED

    if not (SHARED / "kuairand-slice").is_dir():
        pytest.skip(f"kuairand-slice not found at {SHARED}")
    from mosaicrec.data import load_dataset

    ds = load_dataset("kuairand")
    bpr = {"factors": 32, "iterations": 40, "learning_rate": 0.05}
    specs = [ModelSpec(name="mostpop"), ModelSpec(name="scenario-pop"), ModelSpec(name="bpr", params=bpr),
             ModelSpec(name="scenario-bpr", params=bpr)]
    cfg = EvaluationConfig(ks=[10], metrics=["ndcg", "recall"], context="scenario")
    result = run_experiment(ds, SplitConfig(kind="temporal", rating_threshold=1), specs, cfg,
                            config={"evaluation": {"context": "scenario"}})
    ndcg = {r.label: r.metrics["ndcg@10"] for r in result.rows}
    assert ndcg["scenario-pop"] > 1.15 * ndcg["mostpop"], ndcg
    assert ndcg["scenario-bpr"] > 1.05 * ndcg["bpr"], ndcg
    assert result.split["lists_evaluated"] > result.split["users_evaluated"] > 5_000
    small = result.rows[3].by_context["4"]  # the second surface, a sixth of the size of the first
    assert small["ndcg@10"] > result.rows[2].by_context["4"]["ndcg@10"]
    write_reports(result, tmp_path)
    assert "ndcg@10 by scenario" in (tmp_path / "report.md").read_text()


def test_a_sample_of_lists_is_the_same_for_every_model_and_its_metrics_are_theirs():
    x = planted()
    train, test = random_holdout(x, 0.2, seed=0)
    full = evaluate_ranking(create("mostpop").fit(train), test, exclude=train.binary)
    cfg = EvaluationConfig(sample_lists=30)
    a = evaluate_ranking(create("mostpop").fit(train), test, exclude=train.binary, config=cfg)
    b = evaluate_ranking(create("itemknn").fit(train), test, exclude=train.binary, config=cfg)
    assert len(a.users) == 30 and np.array_equal(a.users, b.users)
    rows = np.searchsorted(full.users, a.users)
    assert a.metrics["ndcg@10"] == pytest.approx(full.per_user["ndcg@10"][rows].mean())
