"""The query value: one request for trained users, new users (folded in), context, candidates, exclusions."""

import numpy as np
import pytest
import scipy.sparse as sp

from mosaicrec.errors import MosaicError
from mosaicrec.models import create
from mosaicrec.models.query import Query
from tests.conftest import planted


@pytest.fixture(scope="module")
def fitted():
    x = planted(per_user=12)
    return x, create("ease", {"reg": 10.0}).fit(x)


def test_a_users_query_ranks_as_recommend_of_the_users(fitted):
    x, model = fitted
    users = np.arange(0, 40, 3)
    ranked, ranked_scores = model.recommend(Query(users=users), k=7)
    ids, scores = model.recommend(users, k=7)
    np.testing.assert_array_equal(ranked, ids)
    np.testing.assert_array_equal(ranked_scores, scores)
    seen = x.binary
    assert not any(seen[u, i] for u, row in zip(users, ranked) for i in row)
    everything = model.recommend(Query(users=users, exclude_seen=False), k=7)[0]
    assert any(seen[u, i] for u, row in zip(users, everything) for i in row)  # seen items can come back


def test_a_pairs_query_gives_each_pairs_score_in_its_context(fitted):
    x, model = fitted
    users, items = np.array([3, 3, 7, 0]), np.array([5, 30, 1, 2])
    full = model.score(np.unique(users))
    rows = np.searchsorted(np.unique(users), users)
    np.testing.assert_allclose(model.score(Query(users=users, items=items)), full[rows, items], rtol=1e-6)
    with pytest.raises(MosaicError, match="item index"):
        model.score(Query(users=users, items=np.array([5, 30, 1, x.n_items])))
    with pytest.raises(MosaicError, match="no head 'click'"):
        model.score(Query(users=users, items=items, head="click"))
    scenario = create("scenario-pop", {}).fit(planted(per_user=12))
    ctx = {"scenario": np.array(["feed", "search", "feed", "nowhere"], object), "device": np.array(["a"] * 4)}
    pairs = scenario.score(Query(users=users, items=items, context=ctx))
    for r in range(4):
        alone = scenario.score(Query(users=users[r:r + 1], context=str(ctx["scenario"][r])))[0, items[r]]
        assert pairs[r] == pytest.approx(alone)


def test_a_history_query_folds_new_users_in_and_excludes_their_events(fitted):
    x, model = fitted
    q = Query.from_events([[0, 1, 2], [25, 26]], x.n_items, timestamps=[[5, 6, 7], [1, 2]])
    assert q.new_users and len(q) == 2 and q.timestamps[0, 2] == 7
    ranked, _ = model.recommend(q, k=5)
    scores = model.score(Query(history=q.history))
    for r, events in enumerate(([0, 1, 2], [25, 26])):
        assert not set(events) & set(ranked[r])
        row = scores[r].copy()
        row[events] = -np.inf
        np.testing.assert_array_equal(ranked[r], np.argsort(-row, kind="stable")[:5])
    assert ranked[1].min() >= 20 and ranked[1].max() < 40  # the planted block of items 25, 26


def test_candidates_exclusions_and_later_events_replace_earlier_ones(fitted):
    x, model = fitted
    q = Query.from_events([[3, 3]], x.n_items, weights=[[1.0, 5.0]])
    assert q.history[0, 3] == 5.0 and q.history.nnz == 1
    only = np.array([10, 11, 12, 50])
    ranked, _ = model.recommend(Query(users=np.array([0, 1]), candidates=only), k=6)
    assert set(ranked[ranked >= 0]) <= set(only.tolist()) and (ranked[:, 4:] == -1).all()
    block = sp.csr_matrix((np.ones(2), ([0, 0], [10, 11])), shape=(1, x.n_items))
    got = model.recommend(Query(users=np.array([0]), candidates=only, exclude=block), k=4)[0][0]
    assert 10 not in got and 11 not in got


def test_a_query_refuses_inconsistent_rows():
    with pytest.raises(MosaicError, match="either users"):
        Query()
    with pytest.raises(MosaicError, match="either users"):
        Query(users=np.array([0]), history=sp.csr_matrix((1, 5)))
    with pytest.raises(MosaicError, match="2 context values for 3 rows"):
        Query(users=np.array([0, 1, 2]), context=["a", "b"])
    with pytest.raises(MosaicError, match="1 rows of profiles for 2 rows"):
        Query(history=sp.csr_matrix((2, 5)), profiles=np.zeros((1, 4)))


def test_context_travels_in_the_query():
    x = planted(per_user=12)
    model = create("scenario-pop", {}).fit(x)
    users = np.arange(6)
    feed = model.recommend(Query(users=users, context="feed"), k=5)[0]
    np.testing.assert_array_equal(feed, model.recommend(users, k=5, context="feed")[0])
    mixed = model.recommend(Query(users=users, context=["feed", "search"] * 3), k=5)[0]
    np.testing.assert_array_equal(mixed[0], feed[0])
