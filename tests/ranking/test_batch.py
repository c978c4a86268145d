"""Every user's list in blocks is the list the pipeline gives each user: with live likes and dislikes, users
folded in, erased, new, and items added since training placed by their content."""

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data.content import ItemContent
from mosaicrec.data.synthetic import synthetic_catalog
from mosaicrec.data.schema import Interactions
from mosaicrec.models import create
from mosaicrec.ranking.batch import batch_lists, top_masked
from mosaicrec.ranking.export import Listing
from mosaicrec.ranking.live import LiveState
from mosaicrec.ranking.pipeline import Pipeline, Request
from mosaicrec.ranking.snapshot import Catalog

N_MODEL = 180  # items 180..199 are added after training


@pytest.fixture(scope="module")
def world():
    data, content = synthetic_catalog(n_users=300, n_items=200, n_events=9_000, modalities={"text": 24},
                                      missing=0.0, seed=4)
    x = data.interactions
    ids_u, ids_i = x.users.astype(str), x.items.astype(str)  # ids: the indices, as from_arrays names them
    events = pd.DataFrame({"user_id": ids_u, "item_id": ids_i, "timestamp": x.timestamps, "weight": 1.0})
    trained = x.items < N_MODEL
    train = Interactions.from_arrays(x.users[trained], x.items[trained], n_users=x.n_users, n_items=N_MODEL)
    feats = content.features["text"].copy()
    masks = np.ones(200, bool)
    masks[-3:] = False  # three added items without content: never placed, never listed
    content = ItemContent(np.arange(200).astype(str).astype(object), {"text": feats}, {"text": masks})
    return events, train, content


def listing_for(model, events, content):
    """The model's listing over the whole catalog with live events in which the rules matter: u0 dislikes
    one of their trained likes (folded in), u1 dislikes an item they never saw, u2 likes an added item, u3
    was erased, "newbie" has likes but no model row, "nobody" has nothing."""
    ids = [str(i) for i in range(200)]
    live = LiveState(None)
    extra = pd.DataFrame({"user_id": ["u", "u", "u", "newbie", "newbie"], "item_id": ["0", "1", "190", "3", "4"],
                          "timestamp": events.timestamp.max() + 1, "weight": [0.0, 0.0, 1.0, 1.0, 1.0]})
    liked0 = events.loc[events.user_id == "0", "item_id"].iloc[0]
    extra["user_id"] = ["0", "1", "2", "newbie", "newbie"]
    extra.loc[0, "item_id"] = liked0
    never = sorted(set(ids[:N_MODEL]) - set(events.loc[events.user_id == "1", "item_id"]))[0]
    extra.loc[1, "item_id"] = never
    kept = events[events.user_id != "3"]  # the store deletes an erased user's events
    live.load(pd.concat([kept, extra], ignore_index=True), {"3": 10**9})
    live.block_erased(None)
    listing = Listing(model, Listing.of_model(model).info, Catalog.build(ids, ids, [{} for _ in ids]), content, live)
    return listing, {"disliked": (liked0, never)}


@pytest.mark.parametrize("name,params", [("als", {"factors": 16, "iterations": 4}), ("ease", {"reg": 50.0})])
def test_blocks_give_each_users_pipeline_list(world, name, params, monkeypatch):
    events, train, content = world
    model = create(name, params).fit(train)
    listing, facts = listing_for(model, events, content)
    snap = listing.snapshot()
    pipeline = Pipeline(listing.live)
    users = [*map(str, range(300)), "newbie", "nobody"]
    calls = []
    run = Pipeline.run
    monkeypatch.setattr(Pipeline, "run", lambda self, s, r: calls.append(r.user_id) or run(self, s, r))
    got = batch_lists(pipeline, snap, users, 12, block_scores=40 * 200)  # blocks of 40 users
    assert sorted(calls) == sorted(["0", "3", "newbie", "nobody"])  # the rest came from the blocks
    monkeypatch.setattr(Pipeline, "run", run)
    scale = np.abs(got.scores[np.isfinite(got.scores)]).max()
    for i, user in enumerate(users):
        one = pipeline.run(snap, Request(user, 12, reasons="none"))
        want = [snap.catalog.index[e.item_id] for e in one.items]
        have = got.items[i][got.items[i] >= 0]
        assert len(have) == len(want) and got.cold[i] == one.cold_start, user
        np.testing.assert_allclose(got.scores[i, :len(want)], [e.score for e in one.items], atol=1e-5 * scale)
        if not np.array_equal(have, want):  # only a swap of scores equal to float32 rounding
            assert set(have) ^ set(want) <= {*have[-1:], *want[-1:]} or np.allclose(
                got.scores[i, :len(want)], [e.score for e in one.items], rtol=0, atol=1e-6 * scale), user
    listed = set(got.items[~got.cold].ravel().tolist())
    assert listed & set(range(N_MODEL, 197)), "items added since training are placed by their content"
    assert not listed & {197, 198, 199}  # no content: never listed
    wide = batch_lists(pipeline, snap, users[:30], 195)  # long enough to reach items of score 0
    assert not set(wide.items[~wide.cold].ravel().tolist()) & {197, 198, 199}  # cold: the popular items
    assert wide.lengths().tolist() == [len(pipeline.run(snap, Request(u, 195, reasons="none")).items)
                                       for u in users[:30]]
    row0, row1 = got.items[0], got.items[1]
    assert snap.catalog.index[facts["disliked"][0]] not in row0
    assert snap.catalog.index[facts["disliked"][1]] not in row1
    assert 190 not in got.items[2]  # a live like of an added item is not listed again
    assert got.cold[users.index("nobody")] and got.cold[3]  # erased: served as someone new
    assert not got.cold[users.index("newbie")]


def test_top_masked_leaves_out_each_rows_items_and_pads_short_rows():
    import scipy.sparse as sp

    scores = np.array([[3.0, 2.0, 1.0, 0.5], [1.0, 1.0, -np.inf, 4.0]], np.float32)
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]], np.float32))
    top, vals = top_masked(scores.copy(), exclude, 3, blocked=np.array([2]))
    assert top.tolist() == [[1, 3, -1], [0, 1, -1]]  # ties: the lower index first
    assert vals[0].tolist()[:2] == [2.0, 0.5] and np.isneginf(vals[:, 2]).all()


def test_top_k_breaks_ties_by_index_across_the_cut_and_never_keeps_nan():
    from mosaicrec.models.base import top_k

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (50, 300)).astype(np.float32)  # many ties, at every cut
    scores[::5, ::3] = np.nan
    scores[1, :] = -np.inf
    for k in (7, 250):  # a short list, and one that keeps most of the row (its sort is most of the work)
        top, vals = top_k(scores, k)
        for r in range(50):
            ok = np.flatnonzero(~np.isnan(scores[r]))
            want = ok[np.lexsort((ok, -scores[r, ok]))][:k]  # by score, then the lower index
            assert top[r][:len(want)].tolist() == want.tolist() and (top[r][len(want):] == -1).all()
            np.testing.assert_array_equal(vals[r][:len(want)], scores[r, want])


def test_a_bare_models_state_reads_the_training_rows_and_becomes_a_plain_state_on_a_write(world):
    from mosaicrec.ranking.live import TrainedState

    events, train, _ = world
    model = create("mostpop").fit(train)
    bare = Listing.of_model(model).live
    assert isinstance(bare, TrainedState) and bare.bare
    plain = LiveState(None)
    seen = model._require_fitted()
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    plain.load(pd.DataFrame({"user_id": model.user_ids[rows].astype(str),
                             "item_id": model.item_ids[seen.indices].astype(str), "timestamp": 0, "weight": 1.0}), {})
    assert set(bare.users) == set(plain.users) and len(bare.users) == len(plain.users)
    for u in ("0", "17", "299"):
        assert bare.get(u).positives == plain.get(u).positives
    assert bare.popularity() == plain.popularity()
    ids = tuple(str(i) for i in model.item_ids)
    index = {i: k for k, i in enumerate(ids)}
    users = ["5", "nobody", "42"]
    assert (bare.exclusions(users, ids, index) != plain.exclusions(users, ids, index)).nnz == 0
    bare.apply(pd.DataFrame({"user_id": ["5"], "item_id": ["7"], "timestamp": [1], "weight": [0.0]}))
    assert not bare.bare and "7" in bare.get("5").negatives and bare.get("42") == plain.get("42")
