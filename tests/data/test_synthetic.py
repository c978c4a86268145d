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


def test_the_large_log_is_repeatable_long_tailed_and_topical():
    from mosaicrec.data.synthetic import synthetic_log

    x, vectors = synthetic_log(5_000, 1_000, 200_000, topics=20, seed=4)
    again, _ = synthetic_log(5_000, 1_000, 200_000, topics=20, seed=4)
    assert np.array_equal(x.items, again.items) and np.array_equal(x.users, again.users)
    assert len(x.users) == 200_000 and x.n_users == 5_000 and x.n_items == 1_000
    pop = np.sort(np.bincount(x.items, minlength=1_000))[::-1]
    assert pop[:10].sum() > 0.1 * pop.sum() and pop[-100:].sum() < 0.02 * pop.sum()  # a long tail
    activity = np.bincount(x.users, minlength=5_000)
    assert activity.max() > 20 * np.median(activity)  # heavy and light users
    # tastes are topics: items whose vectors are close share users far more than random pairs
    sims = vectors @ vectors.T
    close = np.argsort(-sims[0])[1:20]
    X = x.binary.tocsc()
    users_of = lambda i: set(X.indices[X.indptr[i]:X.indptr[i + 1]])  # noqa: E731
    overlap = lambda i, j: len(users_of(i) & users_of(j)) / max(1, len(users_of(i) | users_of(j)))  # noqa: E731
    near = np.mean([overlap(0, j) for j in close])
    far = np.mean([overlap(0, j) for j in np.argsort(sims[0])[:20]])
    assert near > 2 * far, (near, far)
