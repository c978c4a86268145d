"""Content models on planted data: the content says which group an item belongs to, so a model that reads it
must place items it never saw in training (new items) and users it never trained on (new users)."""

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data import cold_item_split, cold_user_split, random_holdout
from mosaicrec.data.schema import Dataset
from mosaicrec.errors import ConfigError
from mosaicrec.evaluation.protocol import evaluate_ranking
from mosaicrec.evaluation.runner import ColdStartConfig, run_experiment
from mosaicrec.data.splits import SplitConfig
from mosaicrec.models import create, load_model
from mosaicrec.models.registry import ModelSpec
from mosaicrec.models.query import Query
from tests.conftest import planted, planted_content
from tests.models.test_models import FAST

CONTENT_MODELS = ["content-knn", "content-ease", "content-map", "hybrid", "vbpr", "graph", "two-tower"]
GROUP = np.arange(80) // 20


def _in_group(ids, users):
    ok = ids >= 0
    return float((GROUP[ids[ok]] == (users[:, None] % 4).repeat(ids.shape[1], 1)[ok]).mean())


@pytest.mark.parametrize("name", CONTENT_MODELS)
def test_content_model_refuses_to_fit_without_content(name, planted_data):
    with pytest.raises(ConfigError, match="reads item content"):
        create(name, FAST[name]).fit(planted_data)


@pytest.mark.parametrize("name", CONTENT_MODELS)
def test_new_items_are_ranked_from_content(name):
    x = planted(per_user=12)
    content = planted_content(x)
    train, test = cold_item_split(x, 0.25, seed=1)
    cold = np.unique(test.items)
    assert not np.isin(cold, train.items).any()  # no leakage
    model = create(name, FAST[name]).fit(train, content=content)
    users = np.arange(x.n_users)
    ids, _ = model.recommend(users, k=5, candidates=cold)
    assert _in_group(ids, users) > 0.8, f"{name} puts new items of the wrong group first"
    # an interaction-only model has nothing to rank them by
    ease_ids, _ = create("ease", FAST["ease"]).fit(train).recommend(users, k=5, candidates=cold)
    assert _in_group(ease_ids, users) < 0.5


@pytest.mark.parametrize("name", [*CONTENT_MODELS, "ease", "itemknn", "als", "mostpop"])
def test_new_users_are_placed_from_a_few_events(name, tmp_path):
    x = planted(per_user=12)
    content = planted_content(x)
    train, support, test = cold_user_split(x, 0.25, support=3, seed=2)
    held = np.unique(test.users)
    assert not np.isin(held, train.users).any() and set(np.unique(support.users)) == set(held)
    # support events are each held-out user's first three by time
    for u in held[:5]:
        ts_support = support.timestamps[support.users == u]
        assert len(ts_support) == 3 and ts_support.max() <= test.timestamps[test.users == u].min()
    model = create(name, FAST.get(name)).fit(train, content=content)
    model.save(tmp_path / "m")
    model = load_model(tmp_path / "m")  # folding users in works from a saved model too
    scores = model.score(Query(history=support.binary[held]))
    scores[support.binary[held].toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    rate = _in_group(top, held)
    if name == "mostpop":
        assert rate < 0.6  # the same list for everyone
    else:
        assert rate > 0.8, f"{name}: {rate:.2f} of a new user's top-5 in their group"


def test_two_tower_places_a_new_user_from_profile_alone():
    x = planted(per_user=12)
    content = planted_content(x)
    train, support, test = cold_user_split(x, 0.25, support=3, seed=2)
    # a profile embedding that says which group the user is in (as the text of their attributes would)
    profiles = np.eye(4, dtype=np.float32)[np.arange(x.n_users) % 4]
    model = create("two-tower", {**FAST["two-tower"], "epochs": 30}).fit(train, content=content,
                                                                       user_profiles=profiles)
    held = np.unique(test.users)
    empty = support.binary[held] * 0
    scores = model.score(Query(history=empty, profiles=profiles[held]))
    assert _in_group(np.argsort(-scores, axis=1)[:, :5], held) > 0.8


def test_hybrid_ignores_id_embeddings_of_items_without_events():
    x = planted(per_user=12)
    content = planted_content(x)
    train, test = cold_item_split(x, 0.25, seed=1)
    cold = np.unique(test.items)
    twin = content.features["text"].copy()  # give a cold item exactly the content of a warm one
    warm = np.setdiff1d(np.arange(x.n_items), cold)[0]
    masks = {k: v.copy() for k, v in content.masks.items()}
    feats = {"text": twin, "image": content.features["image"].copy()}
    feats["text"][cold[0]], feats["image"][cold[0]], masks["image"][cold[0]] = twin[warm], \
        content.features["image"][warm], content.masks["image"][warm]
    from mosaicrec.data.content import ItemContent
    model2 = create("hybrid", FAST["hybrid"]).fit(train, content=ItemContent(content.item_ids, feats, masks))
    V = model2.item_vectors()
    assert model2.b_[cold[0]] == 0.0  # no bias either: it has no events
    assert not np.allclose(V[cold[0]], V[warm])  # the warm twin also has its id embedding


def _dataset(x):
    items = pd.DataFrame({"item_id": x.item_ids, "title": [f"item {i}" for i in x.item_ids],
                          "attributes": [{} for _ in x.item_ids]})
    users = pd.DataFrame({"user_id": x.user_ids, "attributes": [{"group": int(u) % 4} for u in x.user_ids]})
    return Dataset("planted", x, items, users)


def test_experiment_reports_warm_new_item_and_new_user_scenarios():
    x = planted(per_user=12)
    specs = [ModelSpec(name="mostpop"), ModelSpec(name="ease", params=FAST["ease"]),
             ModelSpec(name="content-ease", params=FAST["content-ease"])]
    result = run_experiment(_dataset(x), SplitConfig(seed=0), specs, content=planted_content(x),
                            cold_start=ColdStartConfig(items=0.25, users=0.25))
    by = {r.label: r for r in result.rows}
    assert set(by["content-ease"].cold) == {"new items", "new users"}
    new_items = {k: by[k].cold["new items"]["ndcg@10"] for k in by}
    assert new_items["content-ease"] > 2 * new_items["mostpop"]  # 20 candidates: chance is high at 10
    assert by["content-ease"].cold["new users"]["ndcg@10"] > by["mostpop"].cold["new users"]["ndcg@10"]
    assert result.split["cold_start"]["new items"]["held_out"] == 20


def test_cold_start_without_content_is_a_config_error():
    from mosaicrec.config import parse_config

    with pytest.raises(ConfigError, match="content"):
        parse_config({"dataset": {"name": "movielens-100k"}, "models": [{"name": "hybrid"}]})
    with pytest.raises(ConfigError, match="cold_start needs item content"):
        parse_config({"dataset": {"name": "movielens-100k"}, "models": [{"name": "ease"}],
                      "cold_start": {"items": 0.2}})


def test_random_holdout_unaffected_by_content(planted_data, content):
    train, test = random_holdout(planted_data, 0.25, seed=0)
    a = create("ease", FAST["ease"]).fit(train).score(np.arange(5))
    b = create("ease", FAST["ease"]).fit(train, content=content).score(np.arange(5))
    np.testing.assert_array_equal(a, b)
    res = evaluate_ranking(create("content-ease", FAST["content-ease"]).fit(train, content=content), test,
                           exclude=train.binary)
    assert res.metrics["ndcg@10"] > 0.5
