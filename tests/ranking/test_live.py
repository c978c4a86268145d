"""The live state a server starts from: the bulk load gives what folding the same events in one by one
gives (the latest event per user and item, likes and dislikes by the threshold, ties in time in the
order items first appeared)."""

import numpy as np
import pandas as pd

from mosaicrec.ranking.live import LiveState


def test_the_bulk_load_equals_folding_events_in():
    rng = np.random.default_rng(0)
    n = 5000
    ev = pd.DataFrame({"user_id": rng.integers(0, 50, n).astype(str), "item_id": rng.integers(0, 80, n).astype(str),
                       "timestamp": rng.integers(0, 300, n), "weight": rng.choice([0.0, 1.0, 2.0, 5.0], n)})
    ev = ev.drop_duplicates(["user_id", "item_id", "timestamp"])  # one pair twice at one time has no order
    bulk = LiveState(2.0)
    bulk.load(ev, {"gone": 5})
    folded = LiveState(2.0)
    folded.load(ev.iloc[:0], {"gone": 5})
    folded.apply(ev)
    assert bulk.users == folded.users and bulk.erased == folded.erased == {"gone": 5}
    pieces = LiveState(2.0)
    for part in np.array_split(np.arange(len(ev)), 7):  # as events arrive at a running service
        pieces.apply(ev.iloc[part])
    assert {u: (set(e.last), set(e.positives), e.negatives) for u, e in pieces.users.items()} == \
        {u: (set(e.last), set(e.positives), e.negatives) for u, e in bulk.users.items()}
    assert bulk.popularity() == folded.popularity()
    some = bulk.users["3"]
    assert all(w for i, _, w in some.last if i in some.positives) and not set(some.positives) & some.negatives
