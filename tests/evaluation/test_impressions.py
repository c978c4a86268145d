"""Impression metrics (AUC, GAUC, NDCG over impressed items) and their place in an experiment."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.schema import Dataset
from mosaicrec.data.splits import SplitConfig
from mosaicrec.evaluation.impressions import auc, gauc, gspearman, impression_metrics, list_ndcg, spearman
from mosaicrec.evaluation.protocol import EvaluationConfig
from mosaicrec.evaluation.runner import run_experiment
from mosaicrec.models import create
from mosaicrec.models.registry import ModelSpec
from mosaicrec.evaluation.impressions import event_scores
from tests.models.test_multitask import FAST, impressions


def test_auc_counts_pairs_and_half_the_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 1)  # many ties
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert auc(y, s) == pytest.approx(np.mean(pairs))
    assert np.isnan(auc(np.ones(5), np.arange(5)))


def test_gauc_weights_users_by_impressions_and_skips_one_class_users():
    groups = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y = np.array([1, 0, 0, 1, 1, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.9, 0.5, 0.5])
    # user 0: AUC 1 over 4 impressions; user 1: 0 over 2; user 2 has positives only
    assert gauc(groups, y, s) == pytest.approx((1.0 * 4 + 0.0 * 2) / 6)


def test_list_ndcg_reranks_each_users_impressions():
    groups = np.array([0, 0, 0, 1, 1])
    gains = np.array([0, 1, 0, 0, 0])
    assert list_ndcg(groups, gains, np.array([0.1, 0.9, 0.5, 0.3, 0.2]), k=10) == pytest.approx(1.0)
    assert list_ndcg(groups, gains, np.array([0.9, 0.1, 0.5, 0.3, 0.2]), k=10) == pytest.approx(1 / np.log2(4))


def test_spearman_ranks_with_ties_and_gspearman_weights_users():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    y, s = np.round(rng.random(200), 1), rng.random(200)
    assert spearman(y, s) == pytest.approx(spearmanr(y, s).statistic)
    assert np.isnan(spearman(np.ones(4), np.arange(4)))
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    y = np.array([1.0, 2.0, 3.0, 5.0, 1.0, 4.0, 4.0])
    s = np.array([0.1, 0.2, 0.3, 0.1, 0.1, 0.5, 0.1])
    # user 0: perfectly ordered (1) over 3; user 1: scores all equal, orders nothing (0) over 2;
    # user 2: constant label, skipped
    assert gspearman(groups, y, s) == pytest.approx(3 / 5)


def test_a_graded_label_is_scored_by_rank_correlation_and_a_multitask_model_answers_with_its_head():
    x = impressions()
    model = create("multitask", {**FAST, "epochs": 6}).fit(x)
    overall, by_value = impression_metrics(model, x, x, ["click", "play_s"], "scenario", min_impressions=10)
    assert {"play_s corr", "play_s gcorr", "play_s indcg@10"} <= set(overall)
    assert "play_s auc" not in overall and "click auc" in overall
    assert overall["play_s corr"] > 0.3  # play time grows with taste, which the head learns
    heads = event_scores(model, x)
    assert overall["play_s corr"] == pytest.approx(spearman(x.context["play_s"].astype(float), heads["play_time"]))
    assert set(by_value) == {"a", "b"} and "play_s gcorr" in by_value["a"]


def test_a_context_model_is_scored_in_each_impressions_own_context():
    x = impressions()
    model = create("scenario-pop", {"prior": 1.0}).fit(x.subset(x.context["click"] == "1"))
    s = event_scores(model, x)["score"]
    in_a = model.score(x.users[:1], context=x.context["scenario"][0])[0, x.items[0]]
    assert s[0] == pytest.approx(in_a)
    overall, by_value = impression_metrics(model, x, x, ["click"], "scenario", min_impressions=10)
    assert set(by_value) == {"a", "b"} and 0.5 < overall["click auc"] <= 1.0


def _dataset(x) -> Dataset:
    items = pd.DataFrame({"item_id": x.item_ids, "title": "", "texts": [{}] * x.n_items, "image": None,
                          "audio": None, "attributes": [{}] * x.n_items})
    return Dataset("impressions", x, items, pd.DataFrame({"user_id": x.user_ids, "attributes": [{}] * x.n_users}))


def test_an_experiment_trains_on_the_past_impressions_and_never_reads_the_test_labels():
    """Scrambling the labels of the test part (the latest fifth) changes the metrics, never the model."""
    x = impressions()
    cut = np.quantile(x.timestamps, 0.8, method="lower")
    later = x.timestamps > cut
    rng = np.random.default_rng(5)
    scrambled = {k: v.copy() for k, v in x.context.items()}
    for label in ("click", "long_view", "like", "play_s"):
        scrambled[label][later] = rng.permutation(scrambled[label][later])
    specs = [ModelSpec(name="multitask", params={**FAST, "epochs": 6}), ModelSpec(name="mostpop")]
    cfg = EvaluationConfig(ks=[10], metrics=["ndcg"], context="scenario", labels=["click", "like"])
    split = SplitConfig(kind="temporal", test_fraction=0.2, rating_threshold=1)
    runs = [run_experiment(_dataset(data), split, specs, cfg, keep_models=True)
            for data in (x, replace(x, context=scrambled))]
    a, b = (r.rows[0].fitted for r in runs)
    for k, v in a.weights_.items():
        np.testing.assert_array_equal(v, b.weights_[k])
    assert runs[0].rows[0].metrics["click auc"] > 0.65
    assert runs[0].rows[0].metrics["click auc"] != runs[1].rows[0].metrics["click auc"]
    assert set(runs[0].rows[0].impressions) == {"a", "b"}  # per scenario, from the first and only seed
    assert "click gauc" in runs[0].rows[1].metrics  # every model gets the impression metrics
