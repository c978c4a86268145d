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
