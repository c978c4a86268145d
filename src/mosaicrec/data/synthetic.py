"""A generated catalog with a known structure, for measuring models at sizes no shipped dataset has.

Each item has a latent taste vector ``z_i`` and a power-law popularity; each user a taste vector ``p_u`` and a
log-normal activity. A user's events are drawn without replacement from ``softmax(strength · p_u·z_i +
log popularity_i)`` (Gumbel top-k), so the log has real collaborative structure, a long tail, and heavy and
light users. Content is a noisy linear view of the taste vectors: each modality sees a random projection of
``z_i`` plus noise (``content_noise`` sets how much the content says), and a share of items lacks each
modality, as real catalogs do. Timestamps spread over ``days`` in each user's draw order, so temporal splits
work too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mosaicrec.data.content import ItemContent
from mosaicrec.data.schema import ITEM_COLUMNS, USER_COLUMNS, Dataset, Interactions

DEFAULT_MODALITIES = {"text": 384, "image": 256}


def synthetic_catalog(n_users: int = 6000, n_items: int = 3600, n_events: int = 1_000_000, *,
                      factors: int = 16, strength: float = 2.0, popularity_exponent: float = 0.8,
                      modalities: dict[str, int] | None = None, content_noise: float = 1.0,
                      missing: float = 0.05, days: int = 180, seed: int = 0,
                      chunk: int = 512) -> tuple[Dataset, ItemContent]:
    """Generate ``(dataset, content)``: ``n_events`` implicit events (weight 1) over ``n_users × n_items``.

    ``n_events`` is a target: a user never has more than half the catalog, so very dense requests get fewer.
    The same arguments always give the same catalog."""
    if min(n_users, n_items, n_events, factors) < 1:
        raise ValueError("n_users, n_items, n_events and factors must be positive")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_items, factors)).astype(np.float32) / np.sqrt(factors)
    p = rng.standard_normal((n_users, factors)).astype(np.float32)
    log_pop = -popularity_exponent * np.log1p(rng.permutation(n_items)).astype(np.float32)
    activity = rng.lognormal(0.0, 1.0, n_users)
    cap = max(1, n_items // 2)
    counts = activity / activity.sum() * n_events
    for _ in range(50):  # the events heavy users lose to the cap go to the others, in proportion
        capped = np.minimum(counts, cap)
        short, free = n_events - capped.sum(), capped < cap
        if short < 0.5 or not free.any():
            break
        counts = np.where(free, capped * (1 + short / capped[free].sum()), capped)
    counts = np.clip(np.round(counts), 1, cap).astype(np.int64)

    users, items = [], []
    for s in range(0, n_users, chunk):
        block = strength * (p[s:s + chunk] @ z.T) + log_pop
        block -= np.log(-np.log(np.maximum(rng.random(block.shape, dtype=np.float32), 1e-12)))  # Gumbel: top-k = sampling
        for r, row in enumerate(block):
            c = counts[s + r]
            top = np.argpartition(-row, c - 1)[:c]
            items.append(top[np.argsort(-row[top])].astype(np.int32))
            users.append(np.full(c, s + r, np.int32))
    users_a, items_a = np.concatenate(users), np.concatenate(items)
    # each user's events in draw order over the period, starting at a random day
    start = rng.integers(0, days * 86400 // 2, n_users)
    order = np.concatenate([np.arange(c) for c in counts])
    span = days * 86400 // 2
    ts = start[users_a] + (order * span // np.maximum(counts[users_a], 1)) + 1_600_000_000
    user_ids = np.array([f"u{u}" for u in range(n_users)], dtype=object)
    item_ids = np.array([f"i{i}" for i in range(n_items)], dtype=object)
    inter = Interactions(user_ids=user_ids, item_ids=item_ids, users=users_a, items=items_a,
                         weights=np.ones(len(users_a), np.float32), timestamps=ts.astype(np.int64))

    feats, masks = {}, {}
    for name, dim in (DEFAULT_MODALITIES if modalities is None else modalities).items():
        proj = rng.standard_normal((factors, dim)).astype(np.float32)
        x = z @ proj + content_noise * rng.standard_normal((n_items, dim)).astype(np.float32) / np.sqrt(factors)
        mask = rng.random(n_items) >= missing
        x[~mask] = 0.0
        feats[name], masks[name] = x.astype(np.float32), mask
    content = ItemContent(item_ids, feats, masks, {m: "synthetic" for m in feats})

    items_df = pd.DataFrame({"item_id": item_ids, "title": [f"item {i}" for i in range(n_items)]})
    items_df["texts"] = [{} for _ in range(n_items)]
    items_df["attributes"] = [{} for _ in range(n_items)]
    for col in ITEM_COLUMNS:
        if col not in items_df:
            items_df[col] = None
    users_df = pd.DataFrame({"user_id": user_ids})
    users_df["attributes"] = [{} for _ in range(n_users)]
    for col in USER_COLUMNS:
        if col not in users_df:
            users_df[col] = None
    dataset = Dataset(name=f"synthetic-{n_events}", interactions=inter, items=items_df[ITEM_COLUMNS],
                      users=users_df[USER_COLUMNS])
    return dataset, content


def synthetic_log(n_users: int = 1_000_000, n_items: int = 100_000, n_events: int = 50_000_000, *,
                  topics: int = 200, topics_per_user: int = 3, in_topic: float = 0.8,
                  popularity_exponent: float = 1.0, dim: int = 64, content_noise: float = 0.5,
                  days: int = 90, seed: int = 0, chunk: int = 5_000_000) -> tuple[Interactions, np.ndarray]:
    """A large event log in seconds, for scale-out measurements: ``(interactions, item content vectors)``.

    :func:`synthetic_catalog` draws each user's events from a dense softmax over the catalog, which at a
    million users and 100k items is 10¹¹ scores. Here tastes are topics instead: each item has one of
    ``topics`` topics and a power-law popularity (its rank's ``-popularity_exponent``); each user likes
    ``topics_per_user`` topics (Zipf-popular topics are liked more) with Dirichlet weights and has a
    log-normal activity. An event is, with probability ``in_topic``, an item of one of the user's topics
    drawn by popularity within the topic, else an item drawn by global popularity. Users are ``u<n>`` and
    items ``i<n>``; repeats of a (user, item) pair are kept (a log has them; the matrix sums them). An item's
    content vector is its topic's centroid plus noise (``content_noise``), unit length. The same arguments
    give the same log."""
    if min(n_users, n_items, n_events, topics, topics_per_user, dim) < 1:
        raise ValueError("sizes must be positive")
    rng = np.random.default_rng(seed)
    topic_of = rng.integers(0, topics, n_items)
    weight = (1.0 + rng.permutation(n_items)) ** -popularity_exponent  # a random item order of popularity
    by_topic = np.argsort(topic_of, kind="stable")
    cum = np.cumsum(weight[by_topic])
    bounds = np.searchsorted(topic_of[by_topic], np.arange(topics + 1))  # topic t: by_topic[bounds[t]:bounds[t+1]]
    lo = np.where(bounds[:-1] > 0, cum[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    hi = np.where(bounds[1:] > 0, cum[np.maximum(bounds[1:] - 1, 0)], 0.0)
    topic_pop = (1.0 + np.arange(topics)) ** -0.7
    user_topics = rng.choice(topics, (n_users, topics_per_user), p=topic_pop / topic_pop.sum())
    user_mix = np.cumsum(rng.dirichlet(np.ones(topics_per_user), n_users), axis=1).astype(np.float32)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(1, np.floor(activity / activity.sum() * n_events)).astype(np.int64)
    extra = n_events - int(counts.sum())
    if extra > 0:  # the rounding's remainder, to the most active users
        counts[np.argsort(-activity)[:extra % n_users]] += 1
        counts += extra // n_users
    users = np.repeat(np.arange(n_users, dtype=np.int32), counts)[:n_events]
    items = np.empty(len(users), np.int32)
    for s in range(0, len(users), chunk):
        u = users[s:s + chunk]
        pick = (rng.random(len(u), dtype=np.float32)[:, None] > user_mix[u, :-1]).sum(axis=1)
        t = user_topics[u, pick]
        own = rng.random(len(u)) < in_topic
        draw = np.where(own, lo[t] + rng.random(len(u)) * (hi[t] - lo[t]), rng.random(len(u)) * cum[-1])
        items[s:s + chunk] = by_topic[np.minimum(np.searchsorted(cum, draw, side="right"), n_items - 1)]
    timestamps = 1_600_000_000 + rng.integers(0, days * 86_400, len(users))
    inter = Interactions(user_ids=np.char.add("u", np.arange(n_users).astype(str)).astype(object),
                         item_ids=np.char.add("i", np.arange(n_items).astype(str)).astype(object),
                         users=users, items=items, weights=np.ones(len(users), np.float32),
                         timestamps=timestamps.astype(np.int64))
    centroids = rng.standard_normal((topics, dim)).astype(np.float32)
    vectors = centroids[topic_of] + content_noise * rng.standard_normal((n_items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return inter, vectors
