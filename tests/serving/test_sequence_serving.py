"""Serving the sequential and the multi-task models: a user's live events are the sequence, in their order;
a multi-task model's list is ranked by the blend of its heads, in the request's scenario."""

import numpy as np

from mosaicrec.models import create
from mosaicrec.models.training import TrainingInfo
from mosaicrec.serving.service import Service
from tests.models.test_multitask import FAST as MT_FAST
from tests.models.test_multitask import impressions
from tests.models.test_sequential import FAST, cycles, two_surfaces
from tests.serving.test_feedback import _write, ev, ids


def test_a_new_users_live_events_are_read_in_their_order(tmp_path):
    x = cycles()  # each user walks the catalog by +1 or +2
    store = _write(tmp_path, x)
    model = create("sasrec", FAST).fit(x)
    service = Service(model, store, info=TrainingInfo(threshold=4.0))
    for t, item in enumerate([3, 4, 5, 6]):
        service.add_events(ev("walker", str(item), 5.0, 10**9 + t))
    for t, item in enumerate([3, 5, 7, 9]):
        service.add_events(ev("strider", str(item), 5.0, 10**9 + t))
    # the walker's items in the reverse order of time: the sequence steps down and ends at 3
    for t, item in enumerate([6, 5, 4, 3]):
        service.add_events(ev("backwards", str(item), 5.0, 10**9 + t))
    assert ids(service.recommend("walker", 1)) == ["7"]
    assert ids(service.recommend("strider", 1)) == ["11"]
    assert ids(service.recommend("backwards", 3)) != ids(service.recommend("walker", 3))
    service.close()


def test_a_trained_users_list_is_the_models_own(tmp_path):
    x = cycles()
    store = _write(tmp_path, x)
    model = create("sasrec", FAST).fit(x)
    service = Service(model, store, info=TrainingInfo(threshold=4.0))
    top, _ = model.recommend(np.array([5]), k=5)
    assert ids(service.recommend("5", 5)) == [str(i) for i in top[0]]
    service.close()


def test_a_context_sasrec_ranks_in_the_requests_scenario(tmp_path):
    x = two_surfaces()  # the surface of the next event says which half of the catalog it comes from
    store = _write(tmp_path, x)
    model = create("sasrec", {**FAST, "context": "scenario"}).fit(x)
    service = Service(model, store, info=TrainingInfo(threshold=4.0))
    lists = {}
    for scenario in ("a", "b"):
        top, _ = model.recommend(np.array([7]), k=5, context=scenario)
        lists[scenario] = ids(service.recommend("7", 5, scenario=scenario))
        assert lists[scenario] == [str(i) for i in top[0]]
    assert int(lists["a"][0]) < 15 <= int(lists["b"][0])
    service.close()


def test_a_multitask_list_follows_the_blend_in_the_requests_scenario(tmp_path):
    x = impressions()
    store = _write(tmp_path, x)
    for blend in ({"click": 1.0}, {"like": 1.0}):
        model = create("multitask", {**MT_FAST, "blend": blend}).fit(x)
        service = Service(model, store, info=TrainingInfo(threshold=None))
        for scenario in ("a", "b"):
            top, _ = model.recommend(np.array([3]), k=5, context=scenario, exclude_seen=False)
            got = ids(service.recommend("3", 5, scenario=scenario, exclude_seen=False))
            assert got == [str(i) for i in top[0]], (blend, scenario)
        service.close()
