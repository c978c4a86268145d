import json

import numpy as np
import pandas as pd
import pytest

from mosaicrec.data import EventSchema, ItemSchema, UserSchema, load_events, load_items, load_users
from mosaicrec.errors import ValidationError

EVENTS_CSV = "user,movie,rating,ts\nu1,i1,5,100\nu1,i2,3,200\nu2,i1,five,300\nu3,,4,400\nu3,i2,2,2020-01-01T00:00:00Z\n"
SCHEMA = EventSchema(user="user", item="movie", weight="rating", timestamp="ts", event_type=None)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bad_value_error_names_file_row_column_and_value(tmp_path):
    path = write(tmp_path, "events.csv", EVENTS_CSV)
    with pytest.raises(ValidationError) as e:
        load_events(path, SCHEMA)
    assert str(e.value).startswith('events.csv row 3, column "rating": expected a number, got \'five\'')
    assert "1 more bad rows" in str(e.value)
    assert (e.value.row, e.value.column) == (3, "rating")


def test_reject_mode_keeps_good_rows_and_writes_every_bad_one(tmp_path):
    path = write(tmp_path, "events.csv", EVENTS_CSV)
    rejects = tmp_path / "out" / "rejects.csv"
    frame, report = load_events(path, SCHEMA, on_error="reject", rejects_path=rejects)
    assert list(frame["user_id"]) == ["u1", "u1", "u3"]
    assert (report.n_read, report.n_loaded, report.n_rejected) == (5, 3, 2)
    bad = pd.read_csv(rejects)
    assert list(bad["row"]) == [3, 4]
    assert list(bad["column"]) == ["rating", "movie"]
    assert json.loads(bad["record"][0])["rating"] == "five"
    assert "2 rejected" in report.describe()


def test_iso_dates_and_unix_seconds_both_parse(tmp_path):
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\na,x,86400\nb,y,1970-01-03T00:00:00Z\nc,z,1970-01-02\n")
    frame, _ = load_events(path, EventSchema(weight=None))
    assert list(frame["timestamp"]) == [86400, 2 * 86400, 86400]
    assert list(frame["weight"]) == [1.0, 1.0, 1.0]


def test_millisecond_timestamps_convert_to_seconds(tmp_path):
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\na,x,1650812741436\n")
    frame, _ = load_events(path, EventSchema(weight=None, timestamp_unit="ms"))
    assert frame["timestamp"][0] == 1650812741


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path, "e.csv", "uid,item_id\na,x\n")
    with pytest.raises(ValidationError, match=r'column "user_id": missing column; the file has: uid, item_id'):
        load_events(path, EventSchema(timestamp=None, weight=None))


def test_csv_jsonl_and_parquet_load_identically(tmp_path):
    rows = [{"user_id": "a", "item_id": "x", "weight": 2.5, "timestamp": 10, "scenario": "home"},
            {"user_id": "b", "item_id": "y", "weight": 1.0, "timestamp": 20, "scenario": ""}]
    pd.DataFrame(rows).to_csv(tmp_path / "e.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "e.parquet")
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    schema = EventSchema(context=["scenario"])
    frames = [load_events(tmp_path / f"e.{ext}", schema)[0] for ext in ("csv", "jsonl", "parquet")]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f, frames[0])
    assert json.loads(frames[0]["context"][0]) == {"scenario": "home"}
    assert json.loads(frames[0]["context"][1]) == {}


def test_invalid_json_line_is_located(tmp_path):
    path = write(tmp_path, "e.jsonl", '{"user_id": "a", "item_id": "x"}\n{"user_id": "b", \n')
    with pytest.raises(ValidationError, match=r"e.jsonl row 2: invalid JSON"):
        load_events(path, EventSchema(timestamp=None, weight=None))


def test_unsupported_file_type_is_refused(tmp_path):
    path = write(tmp_path, "events.xlsx", "")
    with pytest.raises(ValidationError, match="unsupported file type .xlsx"):
        load_events(path)


def test_items_split_multi_values_keep_numbers_and_resolve_media(tmp_path):
    path = write(tmp_path, "items.csv",
                 "item_id,title,plot,genres,year,poster\n1,Heat,Cops and robbers,Action|Crime,1995,p/1.jpg\n"
                 "2,Up,,Animation,2009,\n")
    frame, _ = load_items(path, ItemSchema(texts=["plot"], image="poster", attributes=["genres", "year"]))
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["attributes"] == {"genres": ["Action", "Crime"], "year": 1995}
    assert first["texts"] == {"plot": "Cops and robbers"}
    assert first["image"] == str((tmp_path / "p" / "1.jpg").resolve())
    assert second["texts"] == {} and second["image"] is None
    assert second["attributes"] == {"genres": "Animation", "year": 2009}


def test_duplicate_item_ids_are_rejected_with_the_first_row(tmp_path):
    path = write(tmp_path, "items.csv", "item_id,title\n1,A\n2,B\n1,C\n")
    with pytest.raises(ValidationError, match=r"items.csv row 3, column \"item_id\": duplicate item id '1' \(first at row 1\)"):
        load_items(path)


def test_users_load_attributes(tmp_path):
    path = write(tmp_path, "users.csv", "user_id,age,gender\n1,24,M\n2,53,F\n")
    frame, report = load_users(path, UserSchema(attributes=["age", "gender"]))
    assert frame["attributes"].tolist() == [{"age": 24, "gender": "M"}, {"age": 53, "gender": "F"}]
    assert report.n_loaded == 2


def test_non_finite_weights_are_bad(tmp_path):
    path = write(tmp_path, "e.csv", "user_id,item_id,weight\na,x,1\nb,y,inf\n")
    with pytest.raises(ValidationError, match="row 2"):
        load_events(path, EventSchema(timestamp=None))
    frame, report = load_events(path, EventSchema(timestamp=None), on_error="reject",
                                rejects_path=tmp_path / "r.csv")
    assert np.isfinite(frame["weight"]).all() and report.n_rejected == 1


# -- defects found by trying it as a new user (issue 13) ---------------------------------------------------
def test_a_row_with_an_extra_field_is_refused_by_row_instead_of_shifting_columns(tmp_path):
    path = write(tmp_path, "events.csv", "user_id,item_id,timestamp\nu1,i1,100,oops\nu2,i2,200\n")
    with pytest.raises(ValidationError) as e:
        load_events(path)
    assert str(e.value).startswith("events.csv row 1: expected 3 fields (user_id, item_id, timestamp), found 4")
    short = write(tmp_path, "short.csv", "user_id,item_id,timestamp\nu1,i1,100\nu2,i2\n")
    frame, report = load_events(short, on_error="reject", rejects_path=tmp_path / "r.csv")
    assert list(frame["user_id"]) == ["u1"] and report.n_rejected == 1
    assert "found 2" in pd.read_csv(tmp_path / "r.csv")["reason"][0]


def test_a_non_utf8_byte_is_reported_with_its_line(tmp_path):
    path = tmp_path / "items.csv"
    path.write_bytes("item_id,title\ni1,Amélie\n".encode() + "i2,Caf\xe9 society\n".encode("latin-1"))
    with pytest.raises(ValidationError) as e:
        load_items(path)
    assert "line 3" in str(e.value) and "0xe9" in str(e.value) and "UTF-8" in str(e.value)


@pytest.mark.parametrize("ts", ["1e30", "-5", "99999999999999", "1900-01-01"])
def test_timestamps_out_of_range_are_refused_not_wrapped(tmp_path, ts):
    path = write(tmp_path, "events.csv", f"user_id,item_id,timestamp\nu1,i1,100\nu2,i2,{ts}\n")
    with pytest.raises(ValidationError) as e:
        load_events(path)
    assert 'row 2, column "timestamp"' in str(e.value) and "1970 to 9999" in str(e.value)


def test_weights_must_be_finite_and_bounded(tmp_path):
    for w in ("inf", "NaN", "1e400", "5e12"):
        path = write(tmp_path, "e.csv", f"user_id,item_id,weight\nu1,i1,{w}\n")
        with pytest.raises(ValidationError, match='column "weight"'):
            load_events(path)


def test_the_report_names_used_and_ignored_columns_with_a_mapping_to_use_them(tmp_path):
    path = write(tmp_path, "events.csv", "user_id,item_id,rating,timestamp\nu1,i1,4,100\n")
    _, report = load_events(path)
    assert report.used == {"user": "user_id", "item": "item_id", "timestamp": "timestamp"}
    assert report.ignored == {"rating": "events.weight=rating"}
    assert "IGNORED: rating (to use it: --map events.weight=rating)" in report.describe()
    items = write(tmp_path, "items.csv", "item_id,title,description,genres,poster\ni1,A,plot,Drama,a.jpg\n")
    _, report = load_items(items)
    assert report.ignored == {"description": "items.texts=description", "genres": "items.attributes=genres",
                              "poster": "items.image=poster"}


def test_the_many_bad_rows_hint_names_the_cli_flag_too(tmp_path):
    path = write(tmp_path, "events.csv", EVENTS_CSV)
    with pytest.raises(ValidationError, match="--on-error reject"):
        load_events(path, SCHEMA)


def test_a_numeric_event_column_refuses_text_and_non_finite_values_naming_the_event():
    from dataclasses import replace

    from mosaicrec.data.schema import Interactions, context_floats

    x = Interactions.from_arrays(np.array([0, 0, 1]), np.array([0, 1, 1]), n_users=2, n_items=2)
    good = replace(x, context={"play_s": np.array(["1.5", "", "3"], dtype=object)})
    np.testing.assert_array_equal(context_floats(good, "play_s"), [1.5, 0.0, 3.0])
    for bad, shown in (["1", "lots", "2"], "event 1: 'lots'"), (["1", "2", "nan"], "event 2: 'nan'"), \
            (["inf", "2", "3"], "event 0: 'inf'"):
        with pytest.raises(ValueError, match=shown):
            context_floats(replace(x, context={"play_s": np.array(bad, dtype=object)}), "play_s")
