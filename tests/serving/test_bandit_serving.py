"""A contextual bandit inside the service: it explores among the model's candidates, learns from rewards
posted as events, and keeps what it learnt across a restart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.content import ItemContent
from mosaicrec.errors import MosaicError
from mosaicrec.models import create
from mosaicrec.serving.bandit import BanditServing
from mosaicrec.serving.service import Service
from tests.conftest import planted
from tests.serving.test_service import _store

N_ITEMS = 40


def _setup(tmp_path):
    x = planted(n_users=60, n_items=N_ITEMS, n_groups=4, per_user=8)
    store = _store(tmp_path, x)
    feats = np.random.default_rng(0).standard_normal((N_ITEMS, 6)).astype(np.float32)
    content = ItemContent(x.item_ids, {"text": feats}, {"text": np.ones(N_ITEMS, bool)})
    good = {str(i) for i in x.item_ids[feats[:, 0] > 0.3]}  # the hidden taste: what earns a reward
    return x, store, content, good


def _rewards(result, good):
    return pd.DataFrame([{"user_id": result.user_id, "item_id": r.item_id, "timestamp": 1_000_000 + k,
                          "event_type": "view", "weight": 1.0 if r.item_id in good else 0.0,
                          "context": json.dumps({"request_id": result.request_id})}
                         for k, r in enumerate(result.items)])


CONFIG = BanditServing(policy={"policy": "linucb", "alpha": 0.3}, candidates=30, dims=6)


def test_the_bandit_learns_from_posted_rewards_and_logs_propensities(tmp_path):
    x, store, content, good = _setup(tmp_path)
    model = create("mostpop").fit(x)
    greedy = Service(model, store, content)
    base = np.mean([r.item_id in good for r in greedy.recommend("1", 5, exclude_seen=False).items])
    greedy.close()
    service = Service(model, store, content, bandit=CONFIG)
    shares = []
    for step in range(120):
        res = service.recommend(str(step % 60), 5, exclude_seen=False)
        assert res.policy == "bandit:linucb" and len(res.items) == 5
        shares.append(np.mean([r.item_id in good for r in res.items]))
        service.add_events(_rewards(res, good))
    assert np.mean(shares[-30:]) > base + 0.3, (base, np.mean(shares[-30:]))
    assert service.health()["bandit"]["rewards"] == 600
    service.impressions.flush()
    log = service.store.impressions()
    log = log[log["policy"] == "bandit:linucb"]  # the greedy service's one list is in the same store
    assert len(log) == 600 and (log["propensity"] == 1.0).all() and log["request_id"].nunique() == 120
    service.close()


def test_rewards_count_once_and_only_for_shown_items(tmp_path):
    x, store, content, good = _setup(tmp_path)
    service = Service(create("mostpop").fit(x), store, content, bandit=CONFIG)
    res = service.recommend("3", 4, exclude_seen=False)
    shown = [r.item_id for r in res.items]
    other = next(i for i in map(str, x.item_ids) if i not in shown)
    rows = _rewards(res, good)
    extra = pd.DataFrame([{**rows.iloc[0].to_dict(), "item_id": other, "timestamp": 5},
                          {**rows.iloc[0].to_dict(), "timestamp": 6},  # the same item again
                          {**rows.iloc[0].to_dict(), "timestamp": 7, "context": json.dumps({"request_id": "nope"})},
                          {**rows.iloc[0].to_dict(), "timestamp": 8, "context": json.dumps({"request_id": 5})},
                          {**rows.iloc[0].to_dict(), "timestamp": 9, "context": json.dumps(["request_id"])}])
    service.add_events(pd.concat([rows, extra], ignore_index=True))
    health = service.health()["bandit"]
    # another item of the list and the same item twice are unmatched; a list the bandit never chose is
    # feedback on another list, not an unmatched reward
    assert health["rewards"] == 4 and health["updates"] == 4 and health["unmatched"] == 2
    assert health["other_lists"] == 1
    assert service.health()["feedback"] == {"events": 9, "naming_a_list": 7}
    service.close()


def test_what_the_bandit_learnt_survives_a_restart(tmp_path):
    x, store, content, good = _setup(tmp_path)
    model = create("mostpop").fit(x)
    service = Service(model, store, content, bandit=CONFIG)
    for step in range(30):
        service.add_events(_rewards(service.recommend(str(step), 5, exclude_seen=False), good))
    before = [r.item_id for r in service.recommend("7", 5, request_id="same", exclude_seen=False).items]
    updates = service.health()["bandit"]["updates"]
    service.close()
    again = Service(model, store, content, bandit=CONFIG)
    assert again.health()["bandit"]["restored"] and again.health()["bandit"]["updates"] == updates == 150
    assert [r.item_id for r in again.recommend("7", 5, request_id="same", exclude_seen=False).items] == before
    again.close()
    # other settings do not fit the saved statistics: the bandit starts afresh
    fresh = Service(model, store, content, bandit=CONFIG.model_copy(update={"dims": 3}))
    assert not fresh.health()["bandit"]["restored"] and fresh.health()["bandit"]["updates"] == 0
    fresh.close()
    from mosaicrec.data.store import Store

    with Store(store) as st:  # a damaged state (not finite): served afresh, not refused
        st.save_state("bandit", {**st.load_state("bandit"), "A": np.full((56, 56), np.nan)})
    damaged = Service(model, store, content, bandit=CONFIG)
    assert not damaged.health()["bandit"]["restored"]
    damaged.close()


def test_share_and_scenarios_choose_which_requests_explore(tmp_path):
    x, store, content, _ = _setup(tmp_path)
    model = create("mostpop").fit(x)
    half = Service(model, store, content, bandit=CONFIG.model_copy(update={"share": 0.5}))
    policies = [half.recommend("1", 3, exclude_seen=False).policy for _ in range(200)]
    assert 0.35 < np.mean([p == "bandit:linucb" for p in policies]) < 0.65
    assert {half.recommend("1", 3, request_id="r1").policy for _ in range(5)} == \
        {half.recommend("1", 3, request_id="r1").policy}  # the same request id is served the same way
    half.close()
    with pytest.raises(MosaicError, match="writable"):
        Service(model, store, content, read_only=True, bandit=CONFIG)


def test_over_http_a_bandit_list_is_served_and_its_rewards_are_learnt(tmp_path):
    from tests.serving.test_server import READ, get, post, serve

    x, store, content, good = _setup(tmp_path)
    service = Service(create("mostpop").fit(x), store, content, bandit=CONFIG)
    with serve(service) as client:
        for step in range(20):
            body = get(client, f"/users/{step}/recommendations", k=4, include_seen=True).json()
            assert body["policy"] == "bandit:linucb" and len(body["items"]) == 4
            events = [{"user_id": str(step), "item_id": i["item_id"], "event_type": "view",
                       "weight": 1.0 if i["item_id"] in good else 0.0, "context": {"request_id": body["request_id"]}}
                      for i in body["items"]]
            assert post(client, "/events", {"events": events}).status_code == 201
        status = get(client, "/status", key=READ).json()["bandit"]
        assert status["rewards"] == 80 and status["unmatched"] == 0 and status["policy"] == "bandit:linucb"
    service.close()  # a restart: the statistics the rewards made were saved in the store
    again = Service(create("mostpop").fit(x), store, content, bandit=CONFIG)
    assert again.health()["bandit"]["updates"] == 80
    again.close()


def test_a_reward_counts_only_from_the_user_the_list_was_shown_to(tmp_path):
    """A write key posting user 'forger's events with the request_id of user 3's list must not steer the
    bandit (issue 32: it was credited)."""
    x, store, content, good = _setup(tmp_path)
    service = Service(create("mostpop").fit(x), store, content, bandit=CONFIG)
    res = service.recommend("3", 4, exclude_seen=False)
    forged = _rewards(res, good).assign(user_id="forger")
    service.add_events(forged)
    health = service.health()["bandit"]
    assert health["rewards"] == 0 and health["updates"] == 0 and health["unmatched"] == 4
    service.add_events(_rewards(res, good))  # the list's own user: each item counts once
    assert service.health()["bandit"]["rewards"] == 4
    service.close()
