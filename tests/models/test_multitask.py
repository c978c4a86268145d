"""The multi-task model over impressions: generated logs where each signal follows from a hidden taste."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mosaicrec.data import Interactions
from mosaicrec.data.content import ItemContent
from mosaicrec.data.splits import temporal_split
from mosaicrec.errors import ConfigError
from mosaicrec.evaluation.impressions import auc
from mosaicrec.models import create, load_model
from mosaicrec.evaluation.impressions import event_scores

FAST = {"epochs": 20, "early_stopping": 0, "dim": 8, "expert_dim": 16, "tower_dim": 8, "experts": 2,
        "batch_size": 256, "threads": 1, "lr": 1e-2, "min_events": 1}


def impressions(n_users: int = 150, n_items: int = 30, per_user: int = 60, seed: int = 0) -> Interactions:
    """Each user sees random items in two scenarios. Clicks follow taste (user · item), flipped for the odd
    items in scenario "b"; a long view needs a click and a strong taste; a like is a rare long view;
    play time grows with taste."""
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((n_users, 4)), rng.standard_normal((n_items, 4))
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, len(users))
    scen = rng.choice(np.array(["a", "b"], dtype=object), len(users))
    taste = np.einsum("ij,ij->i", U[users], V[items])
    taste = np.where((scen == "b") & (items % 2 == 1), -taste, taste)
    click = rng.random(len(users)) < 1 / (1 + np.exp(-4 * taste))
    long_view = click & (taste + 0.3 * rng.standard_normal(len(users)) > 0.5)
    like = long_view & (rng.random(len(users)) < 0.3)
    play = np.where(click, np.exp(1 + 0.5 * taste), 0.5)
    x = Interactions.from_arrays(users, items, weights=click.astype(np.float32),
                                 timestamps=rng.permutation(len(users)), n_users=n_users, n_items=n_items)
    as_str = lambda a: np.asarray(a).astype(int).astype(str).astype(object)  # noqa: E731
    return replace(x, context={"scenario": scen, "hour": as_str(rng.integers(0, 24, len(users))),
                               "weekday": as_str(rng.integers(0, 7, len(users))), "click": as_str(click),
                               "long_view": as_str(long_view), "like": as_str(like),
                               "play_s": np.round(play, 3).astype(str).astype(object)})


@pytest.fixture(scope="module")
def log():
    return temporal_split(impressions(), 0.25)


@pytest.mark.parametrize("architecture, own", [("shared-bottom", 0), ("mmoe", 0), ("ple", 0), ("star", 0),
                                               ("ple", 4), ("star", 4)])
def test_every_architecture_learns_each_signal(log, architecture, own):
    train, test = log
    model = create("multitask", {**FAST, "architecture": architecture, "task_embeddings": own}).fit(train)
    heads = event_scores(model, test)
    for task in ("click", "long_view", "like"):
        y = test.context[task].astype(int)
        assert auc(y, heads[task]) > 0.7, f"{architecture}: {task} AUC {auc(y, heads[task]):.3f}"
    play = test.context["play_s"].astype(float)
    assert np.corrcoef(heads["play_time"], np.log1p(play))[0, 1] > 0.4


@pytest.mark.parametrize("params", [{"architecture": "mmoe"}, {"architecture": "mmoe", "scenario_experts": 1}])
def test_the_scenario_feature_carries_the_flip(log, params):
    train, test = log
    model = create("multitask", {**FAST, **params}).fit(train)
    odd = test.subset(test.items % 2 == 1)
    flipped = replace(odd, context={**odd.context, "scenario": np.where(odd.context["scenario"] == "a", "b", "a")
                                    .astype(object)})
    y = odd.context["click"].astype(int)
    # scored in the wrong scenario, the odd items' clicks are predicted worse
    assert auc(y, event_scores(model, odd)["click"]) > auc(y, event_scores(model, flipped)["click"]) + 0.1


def test_the_pooled_network_without_the_scenario_is_the_same_in_every_scenario(log):
    """The baseline the scenario-aware models are measured against: trained on every scenario's impressions
    without the scenario, it ranks the same in each and cannot learn scenario b's flip."""
    train, test = log
    pooled = create("multitask", {**FAST, "architecture": "ple", "features": ["hour", "weekday"]}).fit(train)
    aware = create("multitask", {**FAST, "architecture": "ple"}).fit(train)
    users = np.arange(5)
    np.testing.assert_array_equal(pooled.score(users, context="a"), pooled.score(users, context="b"))
    b_odd = test.subset((test.context["scenario"] == "b") & (test.items % 2 == 1))
    y = b_odd.context["click"].astype(int)
    assert auc(y, event_scores(aware, b_odd)["click"]) > auc(y, event_scores(pooled, b_odd)["click"]) + 0.1


@pytest.mark.parametrize("params", [{"architecture": "star"}, {"architecture": "ple", "scenario_experts": 1}])
def test_scenario_parts_score_each_impression_with_its_own_scenarios_weights_in_a_mixed_batch(log, params):
    train, test = log
    model = create("multitask", {**FAST, **params, "epochs": 3}).fit(train)
    mixed = event_scores(model, test)["click"]
    scen = test.context["scenario"]
    for value in ("a", "b"):  # the same impressions scored in a batch of their scenario alone
        alone = event_scores(model, test.subset(scen == value))["click"]
        np.testing.assert_allclose(mixed[scen == value], alone, rtol=1e-5, atol=1e-6)
    net_b = event_scores(model, replace(test, context={**test.context, "scenario": np.full(len(scen), "b", object)}))
    assert not np.allclose(net_b["click"][scen == "a"], mixed[scen == "a"])  # scenario weights matter


def test_the_ranking_score_is_the_configured_blend_of_heads(log):
    train, _ = log
    clicks = create("multitask", {**FAST, "blend": {"click": 1.0}}).fit(train)
    likes = create("multitask", {**FAST, "blend": {"like": 1.0}}).fit(train)
    both = create("multitask", {**FAST, "blend": {"click": 2.0, "like": 0.5}}).fit(train)
    events = train.subset(np.arange(200))
    h = event_scores(both, events)
    np.testing.assert_allclose(h["score"], 2.0 * h["click"] + 0.5 * h["like"], rtol=1e-5)
    users = np.arange(10)
    s_click, s_like = clicks.score(users, context="a"), likes.score(users, context="a")
    row = event_scores(clicks, replace(events.subset(np.zeros(train.n_items, int)),
                                      items=np.arange(train.n_items).astype(np.int32)))
    assert s_click.shape == (10, train.n_items)
    assert not np.array_equal(np.argsort(-s_click, axis=1)[:, :5], np.argsort(-s_like, axis=1)[:, :5])
    assert row["score"].shape == (train.n_items,)


def test_uncertainty_weighting_learns_a_weight_per_task(log):
    train, _ = log
    model = create("multitask", {**FAST, "loss_weighting": "uncertainty"}).fit(train)
    log_vars = model.weights_["log_vars"]
    assert np.abs(log_vars).max() > 0.01 and len(np.unique(np.round(log_vars, 4))) == len(log_vars)


def test_a_tasks_own_embeddings_are_trained_by_its_loss_alone(log):
    """With ``task_embeddings`` each task's tower also reads the product of a user and an item embedding of
    its own: another task's output has no gradient into them, its own has."""
    import torch

    train, _ = log
    model = create("multitask", {**FAST, "architecture": "ple", "task_embeddings": 4, "epochs": 2}).fit(train)
    net = model._build(model.weights_)
    n_tasks = len(model.config.tasks)
    assert len(net.task_users) == len(net.task_items) == n_tasks
    batch = train.subset(np.arange(64))
    u, i = (torch.from_numpy(a.astype(np.int64)) for a in (batch.users, batch.items))
    f, scen = torch.from_numpy(model._codes(batch)), torch.zeros(64, dtype=torch.long)
    for t in range(n_tasks):
        net.zero_grad()
        net(u, i, f, scen)[:, t].sum().backward()
        for other in range(n_tasks):
            grads = [e[other].weight.grad for e in (net.task_users, net.task_items)]
            moved = [g is not None and bool(g.abs().sum() > 0) for g in grads]
            assert moved == [other == t] * 2, (t, other)


@pytest.mark.parametrize("params", [{"architecture": "ple"}, {"architecture": "mmoe", "task_embeddings": 4}])
def test_save_and_load_keep_every_head(log, tmp_path, params):
    train, test = log
    model = create("multitask", {**FAST, **params}).fit(train)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    for k, v in event_scores(model, test).items():
        np.testing.assert_allclose(event_scores(again, test)[k], v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.score(np.arange(5), context="b"), model.score(np.arange(5), context="b"),
                               rtol=1e-5)


def test_per_task_checkpoints_read_each_head_from_its_own_best_epoch(log, tmp_path):
    """Tasks peak at different epochs here; each head must be the network after its task's best epoch,
    trained again on every event: the same as a model trained that many epochs (same seed)."""
    train, test = log
    fast = {**FAST, "lr": 0.03}
    model = create("multitask", {**fast, "epochs": 30, "early_stopping": 2, "checkpoints": "per-task"}).fit(train)
    parts = np.array([r["validation parts"] for r in model.history_ if not r["refit"]])
    assert model.task_epochs_ == [int(np.argmax(parts[:, k])) for k in range(parts.shape[1])]
    assert len(set(model.task_epochs_)) > 1 and len(model.head_weights_) == len(set(model.task_epochs_))
    heads = event_scores(model, test)
    names = [t.name for t in model.config.tasks]
    for k in {int(np.argmin(model.task_epochs_)), int(np.argmax(model.task_epochs_))}:
        ref = create("multitask", {**fast, "epochs": model.task_epochs_[k] + 1, "early_stopping": 0}).fit(train)
        np.testing.assert_allclose(heads[names[k]], event_scores(ref, test)[names[k]], rtol=1e-5, atol=1e-6)
    blend = sum(w * heads[n] for n, w in model.config.blend.items())
    np.testing.assert_allclose(heads["score"], blend, rtol=1e-5)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.task_epochs_ == model.task_epochs_
    for k, v in heads.items():
        np.testing.assert_allclose(event_scores(again, test)[k], v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.score(np.arange(5), context="a"), model.score(np.arange(5), context="a"),
                               rtol=1e-5)


def test_the_attribute_task_teaches_items_their_tags(log):
    train, _ = log
    rng = np.random.default_rng(1)
    tags = (rng.random((train.n_items, 6)) < 0.3).astype(np.float32)
    content = ItemContent(train.item_ids, {"tags": tags}, {"tags": np.ones(train.n_items, bool)})
    model = create("multitask", {**FAST, "attribute": "tags", "attribute_weight": 5.0, "epochs": 15}).fit(
        train, content=content)
    import torch

    net = model._network_now()
    with torch.no_grad():
        pred = net.attr(net.items.weight).numpy()
    assert auc(tags.ravel(), pred.ravel()) > 0.8


def test_bad_settings_and_missing_columns_are_refused(log):
    train, _ = log
    with pytest.raises(ConfigError, match="blend"):
        create("multitask", {"blend": {"dwell": 1.0}})
    with pytest.raises(ConfigError, match="'shares'"):
        create("multitask", {**FAST, "tasks": [{"name": "shares"}], "blend": {"shares": 1.0}}).fit(train)
    with pytest.raises(ConfigError, match="attribute"):
        create("multitask", {**FAST, "attribute": "tags"}).fit(train)
    with pytest.raises(ConfigError, match="star"):
        create("multitask", {"architecture": "star", "features": ["hour"]})
    with pytest.raises(ConfigError, match="scenario_experts"):
        create("multitask", {"architecture": "shared-bottom", "scenario_experts": 1})
    with pytest.raises(ConfigError, match="scenario_experts"):
        create("multitask", {"architecture": "mmoe", "scenario_experts": 1, "features": ["hour"]})


def test_one_model_per_scenario_routes_each_request_and_event(log, tmp_path):
    train, test = log
    per = create("per-context", {"base": "multitask", "params": FAST, "min_events": 100}).fit(train)
    assert sorted(per.contexts_) == ["a", "b"]
    only_b = create("multitask", FAST).fit(train.subset(train.context["scenario"] == "b"))
    in_b = test.subset(test.context["scenario"] == "b")
    np.testing.assert_allclose(event_scores(per, in_b)["click"], event_scores(only_b, in_b)["click"], rtol=1e-5)
    np.testing.assert_allclose(per.score(np.arange(4), context="b"), only_b.score(np.arange(4), context="b"),
                               rtol=1e-5)
    # an unknown scenario goes to the pooled model
    np.testing.assert_allclose(per.score(np.arange(4), context="z"), per.pooled_.score(np.arange(4), context="z"),
                               rtol=1e-5)
    per.save(tmp_path / "m")
    np.testing.assert_allclose(event_scores(load_model(tmp_path / "m"), test)["score"], event_scores(per, test)["score"],
                               rtol=1e-5)
    with pytest.raises(ConfigError, match="base"):
        create("per-context", {"base": "per-context"})


def test_per_scenario_models_can_start_from_the_pooled_one(tmp_path):
    """start = "pooled": each scenario's model is the pooled one fine-tuned on that scenario's events. With
    a tenth of the events in "b", that beats a "b" model trained from scratch on "b"'s clicks, and save/load
    keeps it."""
    from tests.evaluation.test_transfer import _big_and_small

    x = _big_and_small().interactions
    train, test = temporal_split(x, 0.25)
    params = {**FAST, "epochs": 8, "early_stopping": 2, "refit": False, "features": ["hour", "scenario"]}
    spec = {"base": "multitask", "params": params, "min_events": 300}
    scratch = create("per-context", spec).fit(train)
    pooled = create("per-context", {**spec, "start": "pooled"}).fit(train)
    assert sorted(pooled.contexts_) == ["a", "b"]
    in_b = test.subset(test.context["scenario"] == "b")
    y = in_b.context["click"].astype(int)
    tuned = auc(y, event_scores(pooled, in_b)["click"])
    assert tuned > auc(y, event_scores(scratch, in_b)["click"]) + 0.05
    assert tuned >= auc(y, event_scores(pooled.pooled_, in_b)["click"]) - 0.02  # the start is kept if no better
    pooled.save(tmp_path / "m")
    np.testing.assert_allclose(event_scores(load_model(tmp_path / "m"), in_b)["click"],
                               event_scores(pooled, in_b)["click"], rtol=1e-5)
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        create("per-context", {"base": "ease", "start": "pooled"})


def test_a_runs_seed_reaches_every_per_scenario_model(log):
    train, _ = log
    fit = lambda seed: create("per-context", {"base": "multitask", "params": {**FAST, "epochs": 2},  # noqa: E731
                                              "min_events": 100, "seed": seed}).fit(train)
    a, b = fit(0), fit(1)
    assert a.pooled_.config.seed == 0 and all(m.config.seed == 0 for m in a.models_)
    assert not np.allclose(a.models_[0].weights_["items.weight"], b.models_[0].weights_["items.weight"])
    pinned = create("per-context", {"base": "multitask", "params": {**FAST, "seed": 7}, "seed": 1})
    assert pinned._base_params()["seed"] == 7  # a seed the base's own params name wins


def test_fine_tuning_starts_from_the_pretrained_model_and_learns_the_new_scenario(log):
    train, test = log
    in_a, in_b = (train.subset(train.context["scenario"] == v) for v in ("a", "b"))
    test_b = test.subset((test.context["scenario"] == "b") & (test.items % 2 == 1))  # where b differs from a
    pre = create("multitask", {**FAST, "features": ["hour"]}).fit(in_a)
    frozen = pre.fine_tune(in_b, lr=1e-9, epochs=1, early_stopping=0)
    np.testing.assert_allclose(event_scores(frozen, test_b)["click"], event_scores(pre, test_b)["click"], atol=1e-4)
    tuned = pre.fine_tune(in_b, early_stopping=0)
    y = test_b.context["click"].astype(int)
    assert auc(y, event_scores(tuned, test_b)["click"]) > auc(y, event_scores(pre, test_b)["click"]) + 0.2


def test_training_on_a_dataset_keeps_every_impression_not_only_the_clicks():
    from mosaicrec.models.training import fit_on_dataset
    from tests.evaluation.test_impressions import _dataset

    x = impressions(n_users=40, per_user=20)
    model = fit_on_dataset(_dataset(x), "multitask", {**FAST, "epochs": 1})
    assert model._seen.nnz == x.binary.nnz  # the unclicked impressions were trained on too
    assert model._seen.nnz > x.subset(x.weights > 0).binary.nnz
