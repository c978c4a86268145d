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


def test_a_users_query_ranks_as_recommend(fitted):
    x, model = fitted
    users = np.arange(0, 40, 3)
    ranked = model.rank(Query(users=users), k=7)
    ids, scores = model.recommend(users, k=7)
    np.testing.assert_array_equal(ranked.items, ids)
    np.testing.assert_array_equal(ranked.score, scores)
    seen = x.binary
    assert not any(seen[u, i] for u, row in zip(users, ranked.items) for i in row)
    everything = model.rank(Query(users=users, exclude_seen=False), k=7).items
    assert any(seen[u, i] for u, row in zip(users, everything) for i in row)  # seen items can come back


def test_a_history_query_folds_new_users_in_and_excludes_their_events(fitted):
    x, model = fitted
    q = Query.from_events([[0, 1, 2], [25, 26]], x.n_items, timestamps=[[5, 6, 7], [1, 2]])
    assert q.new_users and len(q) == 2 and q.timestamps[0, 2] == 7
    ranked = model.rank(q, k=5)
    scores = model.score_histories(q.history)
    for r, events in enumerate(([0, 1, 2], [25, 26])):
        assert not set(events) & set(ranked.items[r])
        row = scores[r].copy()
        row[events] = -np.inf
        np.testing.assert_array_equal(ranked.items[r], np.argsort(-row, kind="stable")[:5])
    assert ranked.items[1].min() >= 20 and ranked.items[1].max() < 40  # the planted block of items 25, 26


def test_candidates_exclusions_and_later_events_replace_earlier_ones(fitted):
    x, model = fitted
    q = Query.from_events([[3, 3]], x.n_items, weights=[[1.0, 5.0]])
    assert q.history[0, 3] == 5.0 and q.history.nnz == 1
    only = np.array([10, 11, 12, 50])
    ranked = model.rank(Query(users=np.array([0, 1]), candidates=only), k=6)
    assert set(ranked.items[ranked.items >= 0]) <= set(only.tolist()) and (ranked.items[:, 4:] == -1).all()
    block = sp.csr_matrix((np.ones(2), ([0, 0], [10, 11])), shape=(1, x.n_items))
    got = model.rank(Query(users=np.array([0]), candidates=only, exclude=block), k=4).items[0]
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
    feed = model.rank(Query(users=users, context="feed"), k=5).items
    np.testing.assert_array_equal(feed, model.recommend(users, k=5, context="feed")[0])
    mixed = model.rank(Query(users=users, context=["feed", "search"] * 3), k=5).items
    np.testing.assert_array_equal(mixed[0], feed[0])
