import numpy as np
import pandas as pd
import pytest

from mosaicrec.data import DatasetSource, EventSchema, Store, ingest_source, load_dataset


def events_file(tmp_path, rows):
    path = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "weight", "timestamp"]).to_csv(path, index=False)
    return path


ROWS = [("a", "x", 1, 10), ("a", "y", 2, 20), ("b", "x", 3, 30)]


def test_ingest_twice_adds_no_duplicates(tmp_path):
    src = DatasetSource(events=str(events_file(tmp_path, ROWS)))
    with Store(tmp_path / "s.duckdb") as store:
        first, _ = ingest_source(store, src)
        second, _ = ingest_source(store, src)
        assert (first.events_added, second.events_added) == (3, 0)
        assert store.counts()["events"] == 3


def test_resent_event_with_new_weight_replaces_it(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        ingest_source(store, DatasetSource(events=str(events_file(tmp_path, ROWS))))
        ingest_source(store, DatasetSource(events=str(events_file(tmp_path, [("a", "x", 9, 10)]))))
        data = store.load_dataset()
    x = data.interactions
    u, i = x.user_index("a")[0], x.item_index("x")[0]
    assert x.matrix[u, i] == 9 and x.n_events == 3


def test_failing_ingest_leaves_earlier_state_intact(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        ingest_source(store, DatasetSource(events=str(events_file(tmp_path, ROWS))))
        before = store.counts()
        good_items = pd.DataFrame({"item_id": ["z"], "title": ["Z"], "texts": [{}], "image": [None],
                                   "audio": [None], "attributes": [{}]})
        broken_events = pd.DataFrame({"user_id": ["c"], "item_id": ["z"], "timestamp": [5],
                                      "event_type": ["click"], "weight": ["not a number"], "context": ["{}"]})
        with pytest.raises(Exception):
            store.ingest(items=good_items, events=broken_events)
        assert store.counts() == before  # the items written before the failure were rolled back too


def test_state_survives_reopening_the_file(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        ingest_source(store, DatasetSource(events=str(events_file(tmp_path, ROWS))))
    with Store(path, read_only=True) as store:
        assert store.counts()["events"] == 3


def test_store_round_trip_equals_direct_load(tmp_path):
    src = DatasetSource(events=str(events_file(tmp_path, ROWS)))
    direct = load_dataset(src)
    with Store(tmp_path / "s.duckdb") as store:
        stored = load_dataset(src, store=store)
    assert list(direct.interactions.user_ids) == list(stored.interactions.user_ids)
    assert list(direct.interactions.item_ids) == list(stored.interactions.item_ids)
    assert (direct.interactions.matrix != stored.interactions.matrix).nnz == 0


def test_delete_user_erases_events_and_profile(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        ingest_source(store, DatasetSource(events=str(events_file(tmp_path, ROWS))))
        assert store.delete_user("a") == 2
        assert store.counts()["events"] == 1


def test_context_columns_reach_interactions(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,scenario\na,x,home\nb,y,search\n")
    with Store(tmp_path / "s.duckdb") as store:
        ingest_source(store, DatasetSource(events=str(path), event_schema=EventSchema(
            timestamp=None, weight=None, context=["scenario"])))
        x = store.load_dataset().interactions
    assert sorted(x.context["scenario"]) == ["home", "search"]


def test_read_only_store_that_does_not_exist_is_a_clear_error(tmp_path):
    from mosaicrec.errors import StoreError
    with pytest.raises(StoreError, match="run `mosaicrec ingest` first"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_ingest_flags_which_event_rows_were_new(tmp_path):
    def frame(rows):
        return pd.DataFrame([{"user_id": u, "item_id": i, "timestamp": t, "event_type": "view", "weight": 1.0,
                              "context": "{}"} for u, i, t in rows])

    with Store(tmp_path / "s.duckdb") as store:
        store.ingest(events=frame([("a", "x", 1)]))
        # stored before; new; a repeat of the new one within the same batch; new
        result = store.ingest(events=frame([("a", "x", 1), ("a", "y", 2), ("a", "y", 2), ("b", "x", 1)]))
        assert result.events_new.tolist() == [False, True, False, True] and result.events_added == 2
        assert store.counts()["events"] == 3


def test_a_components_state_is_kept_replaced_and_survives_reopening(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        assert st.load_state("bandit") is None
        st.save_state("bandit", {"A": np.eye(3), "config": np.array('{"policy": "linucb"}')})
        st.save_state("bandit", {"A": 2 * np.eye(3), "config": np.array('{"policy": "thompson"}')})
        st.save_state("other", {"x": np.arange(4)})
    with Store(path) as st:
        got = st.load_state("bandit")
        np.testing.assert_array_equal(got["A"], 2 * np.eye(3))
        assert str(got["config"]) == '{"policy": "thompson"}'
        np.testing.assert_array_equal(st.load_state("other")["x"], np.arange(4))
