import numpy as np
import pytest

from mosaicrec.data import (Interactions, SplitConfig, k_core, leave_last_out, random_holdout, split,
                            temporal_split, to_implicit)
from tests.conftest import planted


def pairs(x: Interactions) -> set[tuple[int, int, int]]:
    return set(zip(x.users.tolist(), x.items.tolist(), x.timestamps.tolist()))


def test_random_holdout_partitions_events_per_user():
    x = planted()
    train, test = random_holdout(x, 0.25, seed=1)
    assert pairs(train) | pairs(test) == pairs(x) and not pairs(train) & pairs(test)
    per_user_test = np.bincount(test.users, minlength=x.n_users)
    assert (per_user_test == 3).all()  # 12 events per user × 0.25
    assert train.n_users == x.n_users and train.n_items == x.n_items  # id maps kept


def test_random_holdout_is_seeded():
    x = planted()
    a = pairs(random_holdout(x, 0.2, seed=7)[1])
    assert a == pairs(random_holdout(x, 0.2, seed=7)[1])
    assert a != pairs(random_holdout(x, 0.2, seed=8)[1])


def test_single_event_users_stay_in_train():
    x = Interactions.from_arrays([0, 1, 1], [0, 0, 1])
    train, test = random_holdout(x, 0.5, seed=0)
    assert 0 in train.users and 0 not in test.users


def test_leave_last_out_holds_out_each_users_latest_event():
    x = planted()
    train, test = leave_last_out(x)
    assert test.n_events == x.n_users
    for u in range(x.n_users):
        assert test.timestamps[test.users == u].max() >= train.timestamps[train.users == u].max()


def test_temporal_split_puts_all_test_events_after_all_train_events():
    x = planted()
    train, test = temporal_split(x, 0.2)
    assert train.timestamps.max() < test.timestamps.min()
    assert abs(test.n_events / x.n_events - 0.2) < 0.02


def test_temporal_split_without_timestamps_is_a_clear_error():
    from mosaicrec.errors import ConfigError
    with pytest.raises(ConfigError, match="timestamps may be missing"):
        temporal_split(Interactions.from_arrays([0, 1], [0, 1]), 0.5)


def test_k_core_removes_until_stable():
    # item 2 has one event; removing it leaves user 2 with one event, which must go too
    x = Interactions.from_arrays([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 1, 2])
    kept = k_core(x, 2)
    assert sorted(zip(kept.users.tolist(), kept.items.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_to_implicit_keeps_ratings_at_or_above_threshold():
    x = Interactions.from_arrays([0, 0, 1], [0, 1, 1], weights=[5, 3, 4])
    pos = to_implicit(x, 4)
    assert pos.items.tolist() == [0, 1] and pos.weights.tolist() == [1.0, 1.0]
    assert to_implicit(x, None) is x


def test_split_applies_k_core_first():
    x = planted()
    train, test = split(x, SplitConfig(kind="leave_last_out", min_core=13))
    assert train.n_events == 0 and test.n_events == 0  # every user has 12 < 13 events
