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


def test_cold_item_split_holds_out_whole_items():
    from mosaicrec.data import cold_item_split

    x = planted(per_user=12)
    train, test = cold_item_split(x, 0.25, seed=3)
    cold = np.unique(test.items)
    assert len(cold) == 20 and not np.isin(train.items, cold).any()
    assert train.n_events + test.n_events == x.n_events
    assert (np.bincount(test.items, minlength=x.n_items)[cold] == np.bincount(x.items, minlength=x.n_items)[cold]).all()
    assert (train.item_ids == x.item_ids).all()  # same catalog: held-out items keep their index
    again = cold_item_split(x, 0.25, seed=3)[1]
    np.testing.assert_array_equal(np.unique(again.items), cold)


def test_cold_user_split_partitions_each_held_out_user_by_time():
    from mosaicrec.data import cold_user_split

    x = planted(per_user=12)
    train, support, test = cold_user_split(x, 0.25, support=3, seed=3)
    held = np.unique(test.users)
    assert len(held) == 30 and not np.isin(train.users, held).any()
    assert train.n_events + support.n_events + test.n_events == x.n_events
    for u in held:
        s, t = support.timestamps[support.users == u], test.timestamps[test.users == u]
        assert len(s) == 3 and len(t) == 9 and s.max() <= t.min()
    _, none, rest = cold_user_split(x, 0.25, support=0, seed=3)
    assert none.n_events == 0 and rest.n_events == 30 * 12


def test_cold_splits_refuse_an_empty_side():
    from mosaicrec.data import cold_item_split, cold_user_split
    from mosaicrec.errors import ConfigError

    x = planted(n_users=4, n_items=8, n_groups=2, per_user=2)
    with pytest.raises(ConfigError, match="empty side"):
        cold_item_split(x, 0.01)
    with pytest.raises(ConfigError, match="empty side"):
        cold_user_split(x, 0.2, support=5)
