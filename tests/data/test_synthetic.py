"""The generated catalog: deterministic, long-tailed, and with content that says something about taste."""

import numpy as np

from mosaicrec.data.synthetic import synthetic_catalog


def test_same_arguments_same_catalog_and_the_requested_size():
    a, ca = synthetic_catalog(300, 200, 20_000, seed=3)
    b, cb = synthetic_catalog(300, 200, 20_000, seed=3)
    x = a.interactions
    np.testing.assert_array_equal(x.items, b.interactions.items)
    np.testing.assert_array_equal(ca.features["text"], cb.features["text"])
    assert x.n_users == 300 and x.n_items == 200 and abs(x.n_events - 20_000) < 1_000
    pairs = x.users.astype(np.int64) * x.n_items + x.items
    assert len(np.unique(pairs)) == len(pairs)  # a user meets an item once
    assert len(a.items) == 200 and len(a.users) == 300
    other, _ = synthetic_catalog(300, 200, 20_000, seed=4)
    assert not np.array_equal(other.interactions.items, x.items)


def test_popularity_is_long_tailed_and_activity_varies():
    ds, _ = synthetic_catalog(1000, 500, 50_000, seed=0)
    x = ds.interactions
    pop = np.sort(np.bincount(x.items, minlength=x.n_items))[::-1]
    assert pop[:50].sum() > 0.25 * pop.sum()  # the top 10% of items hold over a quarter of the events
    per_user = np.bincount(x.users, minlength=x.n_users)
    assert per_user.max() > 5 * np.median(per_user)


def test_content_predicts_who_likes_an_item():
    """Items a user chose are closer in content to that user's other items than random items are."""
    ds, content = synthetic_catalog(400, 300, 30_000, seed=1, missing=0.0)
    x = ds.interactions
    t = content.features["text"] - content.features["text"].mean(0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    same, rand = [], []
    for u in range(100):
        items = x.items[x.users == u]
        a, b = rng.choice(items, 2, replace=False)
        same.append(t[a] @ t[b])
        rand.append(t[a] @ t[rng.integers(x.n_items)])
    assert np.mean(same) > np.mean(rand) + 0.05
    masks = synthetic_catalog(400, 300, 30_000, seed=1, missing=0.3)[1].masks["image"]
    assert 0.6 < masks.mean() < 0.8
