"""The cold-start paths: content mapped onto collaborative factors, the popularity prior of new users,
profiles in the hybrid's fold-in, centred content, and measured torch threads."""

import numpy as np
import scipy.sparse as sp

from mosaicrec.data import cold_item_split, cold_user_split
from mosaicrec.data.content import ItemContent
from mosaicrec.fusion import concat_features
from mosaicrec.models import create
from mosaicrec.models.query import Query
from tests.conftest import planted, planted_content
from tests.models.test_models import NEURAL
from tests.models.test_multimodal import _in_group


def test_content_map_places_new_items_by_their_mapped_factors():
    x = planted(per_user=12)
    content = planted_content(x)
    train, test = cold_item_split(x, 0.25, seed=1)
    cold = np.unique(test.items)
    model = create("content-map", {"iterations": 8, "factors": 8, "map_reg": 0.1}).fit(train, content=content)
    assert np.abs(model.V_[cold]).sum(axis=1).min() > 0  # every new item has a vector
    # … on the scale of the least seen trained items, so new items do not crowd them out of warm lists
    counts = np.bincount(train.items, minlength=x.n_items)
    rare = (counts > 0) & (counts <= np.quantile(counts[counts > 0], 0.25))
    norm = lambda rows: np.linalg.norm(model.V_[rows], axis=1).mean()
    assert norm(rare) / 1.5 < norm(cold) < 1.5 * norm(rare)
    users = np.arange(x.n_users)
    ids, _ = model.recommend(users, k=5, candidates=cold)
    assert _in_group(ids, users) > 0.8
    # warm items keep ALS's own factors: the warm lists are ALS's
    als = create("als", {"iterations": 8, "factors": 8}).fit(train)
    warm = np.setdiff1d(np.arange(x.n_items), cold)
    np.testing.assert_allclose(model.V_[warm], als.V_[warm], rtol=1e-5, atol=1e-6)


def test_popularity_prior_moves_new_users_toward_popular_items():
    x = planted(per_user=12)
    train, support, test = cold_user_split(x, 0.25, support=3, seed=2)
    counts = np.bincount(train.items, minlength=x.n_items)
    plain = create("ease", {"reg": 10.0}).fit(train)
    prior = create("ease", {"reg": 10.0, "history_popularity": 50.0}).fit(train)
    empty = sp.csr_matrix((1, x.n_items), dtype=np.float32)
    ranked = np.argsort(-prior.score(Query(history=empty))[0], kind="stable")
    assert counts[ranked[:10]].min() >= np.sort(counts)[-10]  # no events: the popularity ranking
    h = support.binary[np.unique(support.users)[:10]]
    a, b = plain.score(Query(history=h)), prior.score(Query(history=h))
    corr = lambda s: np.mean([np.corrcoef(row, np.log1p(counts))[0, 1] for row in s])
    assert corr(b) > corr(a) + 0.2
    small = create("ease", {"reg": 10.0, "history_popularity": 0.01}).fit(train).score(Query(history=h))
    assert np.mean([np.corrcoef(p, q)[0, 1] for p, q in zip(small, a)]) > 0.99  # a small β barely moves it


def test_time_window_prior_counts_what_was_popular_when_the_user_arrived(tmp_path):
    """Item 0 is the most popular over all time but only early on; item 1 is popular in the last weeks.
    A new user arriving at day 111 gets item 1 first with a 20-day window, item 0 without one; only
    events before the user's own count, and a query without times falls back to all-time popularity."""
    from mosaicrec.data.schema import Interactions

    day = 86_400
    users = list(range(60)) + list(range(60, 90)) + list(range(90))
    items = [0] * 60 + [1] * 30 + [2 + u % 6 for u in range(90)]
    times = [d * day for d in range(60)] + [(100 + d % 10) * day for d in range(30)] + [5 * day] * 90
    train = Interactions.from_arrays(np.array(users), np.array(items), timestamps=np.array(times), n_items=10)
    support = Interactions.from_arrays(np.array([0]), np.array([9]), timestamps=np.array([111 * day]),
                                       n_users=1, n_items=10)
    query = Query.of_events(support)
    params = {"neighbors": 5, "history_popularity": 50.0}
    plain = create("itemknn", params).fit(train)
    windowed = create("itemknn", {**params, "popularity_window_days": 20}).fit(train)
    assert np.argmax(plain.score(query)[0]) == 0
    assert np.argmax(windowed.score(query)[0]) == 1
    assert np.argmax(windowed.score(Query(history=query.history))[0]) == 0  # no times: all-time popularity
    windowed.save(tmp_path / "m")
    again = create("itemknn").load(tmp_path / "m")
    np.testing.assert_array_equal(again.score(query), windowed.score(query))
    early = Query.of_events(Interactions.from_arrays(np.array([0]), np.array([9]), timestamps=np.array([50 * day]),
                                                     n_users=1, n_items=10))
    assert np.argmax(windowed.score(early)[0]) == 0  # at day 50 item 1 had no events yet


def test_onboarding_map_learns_what_users_who_started_alike_went_on_to(tmp_path):
    """Users who start with item 0 go on to items 10-14; a larger group consumes item 0 *late*, after
    items 15-19. Co-occurrence ties item 0 to 15-19; the onboarding map, learned from first events to
    the rest, sends a new user who starts with item 0 to 10-14. Saved and loaded, it scores the same;
    over its size limit it is refused with the reason."""
    import pytest

    from mosaicrec.data.schema import Interactions
    from mosaicrec.errors import MosaicError

    users, items, times = [], [], []
    for u in range(20):  # started with 0, then 10-14
        for t, i in enumerate([0, *range(10, 15)]):
            users.append(u), items.append(i), times.append(t)
    for u in range(20, 80):  # 15-19 first, 0 last
        for t, i in enumerate([*range(15, 20), 0]):
            users.append(u), items.append(i), times.append(t)
    train = Interactions.from_arrays(np.array(users), np.array(items), timestamps=np.array(times), n_items=20)
    query = Query.from_events([[0]], 20)
    plain = create("itemknn", {"neighbors": 10}).fit(train)
    onboarded = create("itemknn", {"neighbors": 10, "onboarding_weight": 20.0, "onboarding_events": 1,
                                   "onboarding_reg": 1.0}).fit(train)
    top = lambda m: set(np.argsort(-m.score(query)[0], kind="stable")[:5].tolist())
    assert top(plain) == set(range(15, 20))
    assert top(onboarded) == set(range(10, 15))
    trained = onboarded.recommend(np.arange(3), k=5)[0]  # trained users are not touched by the prior
    np.testing.assert_array_equal(trained, plain.recommend(np.arange(3), k=5)[0])
    onboarded.save(tmp_path / "m")
    np.testing.assert_array_equal(create("itemknn").load(tmp_path / "m").score(query),
                                  onboarded.score(query))
    with pytest.raises(MosaicError, match="onboarding map over 20 items"):
        create("ease", {"onboarding_weight": 1.0, "onboarding_max_items": 10}).fit(train)


def test_hybrid_fold_in_uses_the_profile_it_learned():
    x = planted(per_user=12)
    content = planted_content(x)
    train, support, test = cold_user_split(x, 0.25, support=3, seed=2)
    group = np.arange(x.n_users) % 4
    profiles = np.eye(4, dtype=np.float32)[group] + 0.05
    # every epoch trains (early stopping could keep the BPR start, which has no profile part)
    model = create("hybrid", {**NEURAL, "early_stopping": 0}).fit(train, content=content, user_profiles=profiles)
    held = np.unique(test.users)
    h = support.binary[held]
    with_profile = model.score(Query(history=h, profiles=profiles[held]))
    without = model.score(Query(history=h))
    assert not np.allclose(with_profile, without)
    # a user with no events is placed by the profile alone, in their group
    empty = sp.csr_matrix(h.shape, dtype=np.float32)
    ids = np.argsort(-model.score(Query(history=empty, profiles=profiles[held])), axis=1)[:, :5]
    assert _in_group(ids, held) > 0.6
    assert np.allclose(model.score(Query(history=empty)), model.score(Query(history=empty))[0])  # no profile: no signal


def test_centring_removes_the_shared_direction():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal(16) * 5
    x = (shared + rng.standard_normal((50, 16))).astype(np.float32)  # anisotropic: one big common part
    c = ItemContent(np.arange(50).astype(str).astype(object), {"text": x}, {"text": np.ones(50, bool)})
    raw, centred = concat_features(c, ["text"]), concat_features(c, ["text"], center=True)
    cos = lambda v: (v @ v.T)[np.triu_indices(50, 1)].mean()
    assert cos(raw) > 0.8 and abs(cos(centred)) < 0.05
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, rtol=1e-5)


def test_measured_threads_pick_one_setting_and_record_it():
    x = planted(per_user=12)
    model = create("hybrid", {**NEURAL, "threads": 0, "batch_size": 64}).fit(x, content=planted_content(x))
    import torch
    if torch.get_num_threads() > 1:
        assert model.threads_ in (1, torch.get_num_threads())
    fixed = create("hybrid", {**NEURAL, "threads": 1, "batch_size": 64}).fit(x, content=planted_content(x))
    assert fixed.threads_ == 1


def test_knn_graph_matches_brute_force_and_skips_invalid_rows():
    from mosaicrec.models.content import knn_graph

    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    valid = rng.random(60) > 0.2
    g = knn_graph(x, 5, block_size=7, valid=valid).toarray()
    sims = x @ x.T
    for i in range(60):
        if not valid[i]:
            assert not g[i].any() and not g[:, i].any()
            continue
        cand = np.flatnonzero(valid & (np.arange(60) != i))
        best = cand[np.argsort(-sims[i, cand])[:5]]
        expect = {j for j in best if sims[i, j] > 0}
        assert set(np.flatnonzero(g[i])) == expect
        np.testing.assert_allclose(g[i, list(expect)], sims[i, list(expect)], rtol=1e-5)


def test_early_stopping_keeps_the_best_epoch_on_held_out_events():
    from mosaicrec.models.trainer import train_epochs

    x = planted(per_user=12)
    content = planted_content(x)
    model = create("hybrid", {**NEURAL, "epochs": 40, "early_stopping": 3, "init": "random"}).fit(x, content=content)
    vals = [r["validation"] for r in model.history_ if not r["refit"]]
    assert len(vals) < 40 and model.best_epoch_ == int(np.argmax(vals))  # stopped, and kept the best
    assert len(vals) - 1 - model.best_epoch_ == 3  # after exactly `patience` epochs without a gain
    # the final model is the chosen number of epochs trained again on every event
    assert sum(r["refit"] for r in model.history_) == model.best_epoch_ + 1
    ids, _ = model.recommend(np.arange(x.n_users), k=5)
    assert _in_group(ids, np.arange(x.n_users)) > 0.8
    # the loop itself: the checkpoint of the best epoch is what is restored
    state = {"w": 0}
    seen = []
    result = train_epochs(10, lambda e: state.update(w=e) or {"epoch": e}, seen.append,
                          validate=lambda: [0.1, 0.5, 0.3, 0.2, 0.9][min(state["w"], 4)] if state["w"] < 4 else 0.0,
                          patience=2, checkpoint=lambda: dict(state), restore=lambda s: state.update(s))
    assert result.best_epoch == 1 and result.epochs_run == 4 and state["w"] == 1 and len(seen) == 4
    # with the start validated too, a start no epoch beats is kept (epoch -1)
    state, seen = {"w": -1}, []
    result = train_epochs(10, lambda e: state.update(w=e) or {"epoch": e}, seen.append,
                          validate=lambda: 1.0 if state["w"] < 0 else 0.5, patience=2,
                          checkpoint=lambda: dict(state), restore=lambda s: state.update(s), validate_start=True)
    assert result.best_epoch == -1 and state["w"] == -1 and [r["epoch"] for r in seen] == [-1, 0, 1]
    # one value per objective: each keeps its own best epoch and checkpoint; the loop runs while any improves
    curves = np.array([[0.1, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], [0.1, 0.2, 0.3, 0.6, 0.5, 0.4, 0.3]])
    state, seen = {"w": 0}, []
    result = train_epochs(10, lambda e: state.update(w=e) or {"epoch": e}, seen.append,
                          validate=lambda: curves[:, min(state["w"], 6)], patience=2,
                          checkpoint=lambda: dict(state), restore=lambda s: state.update(s))
    assert result.best_epochs == [1, 3] and [s["w"] for s in result.best_states] == [1, 3]
    assert result.epochs_run == 6 and result.best_epoch == 3 and state["w"] == 3  # the best mean is restored
    assert seen[1]["validation parts"] == [0.5, 0.2]


def test_a_bpr_start_no_epoch_improves_is_kept():
    """A learning rate too small for any epoch to improve: validation keeps the BPR start (best epoch -1),
    and the refit trains no epoch, so the model scores as BPR fitted on all events with the same seed."""
    x = planted(per_user=12)
    bpr = create("bpr", {"factors": NEURAL["dim"], "iterations": 20, "seed": 42, "num_threads": 1}).fit(x)
    model = create("hybrid", {**NEURAL, "lr": 1e-12, "init": "bpr", "init_iterations": 20,
                              "epochs": 6}).fit(x, content=planted_content(x))
    assert model.best_epoch_ == -1
    assert not any(r.get("refit") for r in model.history_)
    users = np.arange(x.n_users)
    np.testing.assert_allclose(model.score(users), bpr.score(users), atol=1e-4)
    # the two-tower's start is a whole model too: its user tower starts as the ridge map from a user's
    # history to their BPR vector, so the kept start places users it never trained on in their group
    train, support, test = cold_user_split(x, 0.25, support=3, seed=2)
    held = np.unique(test.users)
    tower = create("two-tower", {**NEURAL, "lr": 1e-12, "init": "bpr", "init_iterations": 200, "epochs": 6}
                   ).fit(train, content=planted_content(x))
    assert tower.best_epoch_ == -1
    scores = tower.score(Query(history=support.binary[held]))
    scores[support.binary[held].toarray() > 0] = -np.inf
    assert _in_group(np.argsort(-scores, axis=1, kind="stable")[:, :5], held) > 0.8


def test_bpr_start_scores_as_bpr_before_training_moves_it():
    """init='bpr': the id vectors are BPR's and the content part starts at zero, so a model that barely
    trains (lr ~ 0) scores warm items exactly as BPR with the same seed does."""
    x = planted(per_user=12)
    params = {**NEURAL, "epochs": 1, "lr": 1e-12, "init": "bpr", "init_iterations": 20}
    bpr = create("bpr", {"factors": NEURAL["dim"], "iterations": 20, "seed": 42, "num_threads": 1}).fit(x)
    users = np.arange(x.n_users)
    for name in ("hybrid", "two-tower", "graph", "vbpr"):  # VBPR's γ has the full width: its start is this BPR
        model = create(name, params).fit(x, content=planted_content(x))
        np.testing.assert_allclose(model.score(users), bpr.score(users), atol=1e-4)
    # the start takes BPR's settings (a tuned BPR's learning rate and L2)
    tuned = create("bpr", {"factors": NEURAL["dim"], "iterations": 20, "seed": 42, "num_threads": 1,
                           "learning_rate": 0.05, "regularization": 0.001}).fit(x)
    model = create("hybrid", {**params, "init_learning_rate": 0.05, "init_regularization": 0.001}
                   ).fit(x, content=planted_content(x))
    np.testing.assert_allclose(model.score(users), tuned.score(users), atol=1e-4)
    assert np.abs(tuned.score(users) - bpr.score(users)).max() > 1e-2
    # and with real training the content part moves away from zero
    trained = create("hybrid", {**NEURAL, "init": "bpr", "init_iterations": 20, "early_stopping": 0}
                     ).fit(x, content=planted_content(x))
    assert np.abs(trained.score(users) - bpr.score(users)).max() > 1e-2


def test_graph_propagation_by_scipy_has_the_gradient_of_the_sparse_product():
    import torch

    from mosaicrec.models.neural.graph import _propagator

    rng = np.random.default_rng(0)
    m = sp.random(30, 30, density=0.2, random_state=1, dtype=np.float32)
    e = torch.tensor(rng.standard_normal((30, 4)), dtype=torch.float32, requires_grad=True)
    w = torch.tensor(rng.standard_normal((30, 4)), dtype=torch.float32)
    (_propagator(m)(e) * w).sum().backward()
    dense = torch.tensor(m.toarray())
    e2 = e.detach().clone().requires_grad_(True)
    ((dense @ e2) * w).sum().backward()
    np.testing.assert_allclose(_propagator(m)(e).detach().numpy(), (dense @ e2).detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(e.grad.numpy(), e2.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_objectives_match_their_definitions():
    import torch

    from mosaicrec.models.neural import objectives

    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expect = -np.mean(np.log(1 / (1 + np.exp(-np.array([2.0, -1.0])))))
    assert abs(float(objectives.bpr(pos, neg)) - expect) < 1e-6
    assert abs(float(objectives.l2(torch.ones(2, 3), torch.zeros(2, 3))) - 3.0) < 1e-6
    logits, labels = torch.tensor([0.0, 3.0]), torch.tensor([1, 0])
    assert abs(float(objectives.bce(logits, labels)) - np.mean([np.log(2), np.log(1 + np.exp(3))])) < 1e-5
    w = torch.tensor([1.0, 0.0])
    assert float(objectives.mse(torch.tensor([1.0, 5.0]), torch.tensor([0.0, 0.0]), w)) == 1.0


def test_content_map_without_weights_or_rescaling_is_the_plain_ridge_map():
    x = planted(per_user=12)
    content = planted_content(x)
    train, test = cold_item_split(x, 0.25, seed=1)
    cold = np.unique(test.items)
    params = {"iterations": 8, "factors": 8, "map_reg": 0.1, "weigh_by_events": False, "rescale": False}
    model = create("content-map", params).fit(train, content=content)
    F = concat_features(content, content.modalities, center=True).astype(np.float64)
    trained = np.bincount(train.items, minlength=x.n_items) > 0
    Ft, Vt = F[trained], model.V_[trained].astype(np.float64)  # warm factors are ALS's own
    W = np.linalg.solve(Ft.T @ Ft + 0.1 * np.eye(F.shape[1]), Ft.T @ Vt)
    np.testing.assert_allclose(model.V_[cold], (F[cold] @ W).astype(np.float32), rtol=1e-4, atol=1e-5)
    shaped = create("content-map", {**params, "weigh_by_events": True, "rescale": True}).fit(train, content=content)
    assert not np.allclose(shaped.V_[cold], model.V_[cold], atol=1e-3)  # the default differs from the plain map
