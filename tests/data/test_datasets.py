import numpy as np
import pytest

from mosaicrec.data import DATASETS, load_dataset
from mosaicrec.errors import DatasetNotFoundError
from tests.conftest import needs_shared


def test_movielens_100k_is_the_real_dataset(movielens):
    x = movielens.interactions
    assert (x.n_events, x.n_users, x.n_items) == (100_000, 943, 1682)
    assert int(x.weights.sum()) == 352_986  # the rating sum of u.data
    first = movielens.items.set_index("item_id").loc["1"]
    assert first["title"] == "Toy Story (1995)"
    assert first["attributes"]["genres"] == ["Animation", "Children's", "Comedy"]
    assert movielens.rating_scale == (1.0, 5.0)
    assert movielens.users.set_index("user_id").loc["1", "attributes"]["occupation"] == "technician"


@needs_shared
def test_ml100k_multimodal_loads_through_the_same_loaders():
    ds = load_dataset("ml100k-multimodal")
    assert ds.interactions.n_events == 100_000 and int(ds.interactions.weights.sum()) == 352_986
    items = ds.items.set_index("item_id")
    assert "spaceman" in items.loc["1", "texts"]["description"]
    assert items["image"].notna().sum() == 1654
    assert "imdb_rating" not in items.loc["1", "attributes"]  # popularity leak kept out


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetNotFoundError, match="movielens-100k"):
        load_dataset("no-such-set")


def test_registry_names_every_builtin():
    assert {"movielens-100k", "ml100k-multimodal"} <= set(DATASETS)


def test_genre_matrix_is_multi_hot(movielens):
    m = movielens.item_attribute_matrix("genres")
    assert m.shape == (1682, 19)
    assert np.asarray(m.sum(axis=1)).min() >= 1


@needs_shared
def test_kuairand_keeps_scenarios_and_merges_repeated_impressions(tmp_path):
    import json

    from mosaicrec.data import Store
    from mosaicrec.data.datasets import cache_dir, ingest_source, resolve_source

    ds = load_dataset("kuairand")
    x = ds.interactions
    facts = json.loads((cache_dir() / "kuairand" / "prepared.json").read_text())
    assert facts["events_in_source"] == 228_329 and facts["repeated_rows_merged"] == 5_885
    assert facts["event_types"] == {"impression": 121_513, "long_view": 68_018, "click": 29_041, "like": 3_872}
    # two impressions a few ms apart collapse at second resolution (same user, video, second and type)
    assert x.n_events == 222_442 and x.n_items == 7_583 and x.n_users == 27_285
    scenarios, counts = np.unique(x.context["scenario"], return_counts=True)
    assert len(scenarios) == 15 and dict(zip(scenarios, counts))["1"] > 0.7 * x.n_events
    assert set(np.unique(x.weights)) == {0.0, 1.0, 2.0, 3.0}  # impression, click, long view, like
    likes = x.event_types == "like"
    assert (x.weights[likes] == 3.0).all()
    assert ds.items.set_index("item_id").loc["1", "attributes"]["video_type"] == "NORMAL"
    # re-ingesting the prepared files changes nothing
    with Store(tmp_path / "k.duckdb") as store:
        source = resolve_source("kuairand")
        ingest_source(store, source)
        first = store.counts()
        ingest_source(store, source)
        assert store.counts() == first and first["events"] == 222_442


def test_every_shared_dataset_is_found_under_its_own_folder(tmp_path, monkeypatch):
    from mosaicrec.data.datasets import DATASETS, dataset_available

    monkeypatch.setenv("MOSAICREC_DATA_ROOT", str(tmp_path))
    for name, entry in DATASETS.items():
        if entry.requires == "shared":
            (tmp_path / entry.folder).mkdir()
            assert dataset_available(name)[0], name
    assert DATASETS["kuairand"].folder == "kuairand-slice"
