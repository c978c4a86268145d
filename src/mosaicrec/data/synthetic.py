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
