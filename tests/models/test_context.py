"""Context models R(u, i, c) on generated data where the context decides which of a user's items fit."""

from dataclasses import replace

import numpy as np
import pytest

from mosaicrec.data import Interactions, random_holdout
from mosaicrec.errors import ConfigError
from mosaicrec.models.query import Query
from mosaicrec.models import ScenarioBPR, create, load_model

SCENARIO_BPR = {"iterations": 40, "factors": 16, "learning_rate": 0.05, "num_threads": 1, "min_events": 1}


def two_surfaces(n_users: int = 160, n_items: int = 80, per_user: int = 16, seed: int = 0) -> Interactions:
    """Users in 4 taste groups (a block of 20 items each). On surface "shorts" a user takes only the first
    half of their block, on "long" only the second half: taste says which block, the surface which half."""
    rng = np.random.default_rng(seed)
    users, items, scen = [], [], []
    for u in range(n_users):
        block = (u % 4) * 20
        for _ in range(per_user):
            shorts = rng.random() < 0.5
            lo = block if shorts else block + 10
            users.append(u)
            items.append(int(rng.integers(lo, lo + 10)))
            scen.append("shorts" if shorts else "long")
    x = Interactions.from_arrays(np.array(users), np.array(items), n_users=n_users, n_items=n_items)
    return replace(x, context={"scenario": np.array(scen, dtype=object)})


def half_of(items: np.ndarray) -> np.ndarray:
    return (items % 20) >= 10  # True: the "long" half of a block


@pytest.mark.parametrize("name,params", [("scenario-bpr", SCENARIO_BPR), ("scenario-pop", {"prior": 1.0})])
def test_the_context_decides_which_items_come_first(name, params):
    x = two_surfaces()
    model = create(name, params).fit(x)
    users = np.arange(x.n_users)
    for surface, want_long in (("shorts", False), ("long", True)):
        ids, _ = model.recommend(users, k=5, exclude_seen=False, context=surface)
        right = half_of(ids) == want_long
        assert right.mean() > 0.9, f"{name} in {surface}: {right.mean():.2f} of top-5 from that surface's half"
    # without a context the model falls back to its shared scores: both halves, no surface preferred
    ids, _ = model.recommend(users, k=10, exclude_seen=False)
    assert 0.2 < half_of(ids).mean() < 0.8


def test_scenario_bpr_keeps_the_taste_groups_in_every_context():
    x = two_surfaces()
    model = create("scenario-bpr", SCENARIO_BPR).fit(x)
    ids, _ = model.recommend(np.arange(x.n_users), k=5, exclude_seen=False, context="long")
    assert (ids // 20 == (np.arange(x.n_users) % 4)[:, None]).mean() > 0.9


def test_a_context_value_never_seen_gets_the_shared_scores():
    x = two_surfaces()
    model = create("scenario-bpr", SCENARIO_BPR).fit(x)
    users = np.arange(8)
    np.testing.assert_array_equal(model.score(users, context="a-new-surface"), model.score(users))
    assert model.knows_context("long") and not model.knows_context("a-new-surface")
    assert list(model.contexts_) == ["long", "shorts"]


def test_one_context_per_user_row():
    x = two_surfaces()
    model = create("scenario-pop", {}).fit(x)
    per_row = model.score(np.array([0, 1]), context=["shorts", "long"])
    np.testing.assert_array_equal(per_row[0], model.score(np.array([0]), context="shorts")[0])
    np.testing.assert_array_equal(per_row[1], model.score(np.array([1]), context="long")[0])


def test_factor_view_reproduces_the_context_scores():
    """One inner-product index over item_factors serves every context: [q_u + W_c, onehot c]·[V_i, B_·i] + b_i."""
    x = two_surfaces()
    model = create("scenario-bpr", SCENARIO_BPR).fit(x)
    V, b = model.item_factors()
    users = np.arange(10)
    for ctx in ("shorts", "long", None):
        np.testing.assert_allclose(model.query_factors(Query(users=users, context=ctx)) @ V.T + b,
                                   model.score(users, context=ctx),
                                   rtol=1e-5, atol=1e-5)
    # folded-in users (their history only) are placed in the context too
    hist = x.binary[:10]
    np.testing.assert_allclose(model.query_factors(Query(history=hist, context="long")) @ V.T + b,
                               model.score(Query(history=hist, context="long")), rtol=1e-5, atol=1e-5)
    folded, _ = model.recommend(users, k=5)  # sanity: trained users rank inside their block
    assert (folded // 20 == (users % 4)[:, None]).mean() > 0.8


def test_context_models_beat_their_context_free_twins_on_held_out_context_events():
    x = two_surfaces(per_user=20)
    train, test = random_holdout(x, 0.25, seed=1)
    for ctx_name, plain_name, params in (("scenario-bpr", "bpr", SCENARIO_BPR), ("scenario-pop", "mostpop", {})):
        ctx_model = create(ctx_name, params).fit(train)
        plain = create(plain_name, {k: v for k, v in params.items() if k != "min_events"}).fit(train)
        ctx_hits = plain_hits = 0
        for u, i, c in zip(test.users, test.items, test.context["scenario"]):
            ctx_hits += i in ctx_model.recommend(np.array([u]), 5, exclude_seen=False, context=c)[0][0]
            plain_hits += i in plain.recommend(np.array([u]), 5, exclude_seen=False)[0][0]
        assert ctx_hits > 1.3 * plain_hits, f"{ctx_name} {ctx_hits} vs {plain_name} {plain_hits} hits"


def test_save_and_load_keep_the_contexts(tmp_path):
    x = two_surfaces()
    model = create("scenario-bpr", SCENARIO_BPR).fit(x)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, ScenarioBPR) and list(again.contexts_) == list(model.contexts_)
    np.testing.assert_array_equal(again.score(np.arange(5), context="long"), model.score(np.arange(5), context="long"))


def test_events_without_the_context_column_are_a_config_error():
    x = two_surfaces()
    bare = replace(x, context={"device": x.context["scenario"]})
    with pytest.raises(ConfigError, match=r"'scenario'.*device"):
        create("scenario-bpr", SCENARIO_BPR).fit(bare)
    create("scenario-bpr", {**SCENARIO_BPR, "context": "device"}).fit(bare)  # naming it works


def test_rare_context_values_fall_back_to_the_shared_part():
    x = two_surfaces()
    scen = x.context["scenario"].copy()
    scen[:3] = "rare"
    model = create("scenario-bpr", {**SCENARIO_BPR, "min_events": 20}).fit(replace(x, context={"scenario": scen}))
    assert "rare" not in set(model.contexts_)


def test_shared_share_one_trains_no_context_part():
    x = two_surfaces()
    model = create("scenario-bpr", {**SCENARIO_BPR, "shared_share": 1.0}).fit(x)
    assert not model.W_.any() and not model.B_.any()
    np.testing.assert_allclose(model.score(np.arange(5), context="long"), model.score(np.arange(5)), atol=1e-6)
